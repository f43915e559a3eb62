"""`tierwise audit`: where each workload's spend goes, and what each lever would save on it.

data.py gathers the requests and attempts by workload; spend.py says where the spend goes; right_size.py, route.py,
batch.py, cache.py and waste.py are the levers, each what it would make of every request; saving.py turns that into
savings with intervals; report.py assembles report.json, table.py its headline, plots.py and page.py report.html,
recommend.py the recommended workloads file; run.py runs it all and writes the directory.
"""
