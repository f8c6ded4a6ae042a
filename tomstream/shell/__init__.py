"""The application shell: the ``tomstream`` command, the demo, the local stack and the
operator's views (stats, status, reports).

The shell may import everything; nothing in the library or the services imports the shell.
"""
