"""``melnas-rank``: how well a finished search's supernet ranks archs, against the same
archs trained standalone (draw, standalone cache, statistics, report; ``job.run_rank``)."""
