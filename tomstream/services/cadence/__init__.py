"""cadence: observation status changes in, cadence triggers (new observation requests) out;
dynamic cadence strategies and observation templates. Built in the cadence issue."""
