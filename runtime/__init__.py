"""Pieces every Kiln process needs that are neither wire types nor persistence: the clock, the
metric series, the source-URL policy, the broker's node URLs and the batching queue behind
group commit."""
