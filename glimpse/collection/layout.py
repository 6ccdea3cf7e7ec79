"""The files of a collection's directory (codes and binarizer files: :mod:`glimpse.backends.binary`)."""

DB_NAME = "metadata.sqlite"
VECTORS_NAME = "vectors.f16"
VECTORS_FILE = "vectors-{generation}.f16"  # after a compaction (the generation it committed)
LOCK_NAME = "write.lock"
THUMBNAIL_DIR = "thumbnails"  # made by glimpse serve; never indexed, even when the collection lies in an indexed folder
#: What a collection leaves in its folder besides its database (globs): met without the database
#: (deleted, lost), they are refused rather than built over, since a new collection's rows and ids
#: would mix with theirs (thumbnails are named by item id). The -wal file would be replayed into a new database.
LEFT_BEHIND = ("vectors*.f16", "vectors*.sums", "codes-*.faissbin", "codes-*.delta", "binarizer-*.npz", "adapt-*.npz", "upgrade-*",
               "items-*.npz", f"{DB_NAME}-wal", THUMBNAIL_DIR)
