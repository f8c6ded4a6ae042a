"""sim: the simulated survey that feeds the alert cycle, as the DESC TOM's PPDB tables did.

``tomstream sim load`` reads an ELAsTiCC2 SNANA FITS set and ``tomstream sim synth`` makes a
synthetic one; both fill the ``sim`` schema in PostgreSQL (objects with their truth, forced
sources, sources, alerts). ``tomstream sim send`` streams the unsent alerts in time order to the
alert topics as ELAsTiCC2 (``elasticc.v0_9_1``) Avro, with the DESC TOM's history rules, and
remembers what it sent.

- ``alerts``: the ELAsTiCC2 rules (ids, flux scale, DDF, history windows, topics) and the pure
  alert builder;
- ``snana``: SNANA FITS reading; ``synth``: the synthetic survey;
- ``storage``: the ``sim`` tables (bulk COPY in, batched reads out); ``send``: the sender;
- ``cli``: the ``tomstream sim`` commands.
"""
