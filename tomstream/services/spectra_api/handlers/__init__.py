"""The routes: ``elasticc2`` (the DESC endpoints), ``accounts`` (login), ``health``."""
