"""Collections on Milvus: Milvus Lite (embedded) or a Milvus server (standalone or cluster).

``milvus-lite:///path/photos.db`` and ``milvus://HOST:PORT/NAME`` (:mod:`.connect`) name them;
:class:`.index.MilvusIndex` is the search backend (codes then exact re-rank where the server
allows two vector fields, Milvus's exact float index elsewhere; filters as expressions).
"""
