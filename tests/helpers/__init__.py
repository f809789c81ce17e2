"""What the tests share besides fixtures (those are in tests/conftest.py): the repository's
paths, the real recordings, the independent readings of a bundle the tests compare against, and
the processes (a Dask cluster, an S3 server) the fixtures start. Test modules import from here,
never from each other or from conftest."""
