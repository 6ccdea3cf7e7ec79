"""The files of a collection's directory (codes and binarizer files: :mod:`glimpse.backends.binary`)."""

DB_NAME = "metadata.sqlite"
VECTORS_NAME = "vectors.f16"
VECTORS_FILE = "vectors-{generation}.f16"  # after a compaction (the generation it committed)
LOCK_NAME = "write.lock"
THUMBNAIL_DIR = "thumbnails"  # made by glimpse serve; never indexed, even when the collection lies in an indexed folder
