"""The digest statements of a PostgreSQL table (validation, the merge's checksums, the
fingerprint of the tables the merge leaves alone)."""

#: One table's digest, shared with the merge engine (tcmerge.merge.checksums): row count
#: and the sum of a 64-bit hash of each row's text; independent of row order, one scan,
#: no sort. The sum of bigints is exact (numeric result, accumulated in 128 bits).
TABLE_DIGEST = ("SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text "
                "FROM {} AS t")
#: PostgreSQL 14+: a hash of each column's value by its type's own hash (see
#: merge/checksums.py); written ``r<sum>`` so that a stored digest says its method
RECORD_DIGEST = ("SELECT count(*), 'r' || coalesce(sum(hash_record_extended(t, 0)), 0)::text "
                 "FROM {} AS t")
