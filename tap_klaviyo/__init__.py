"""tap-klaviyo: a Singer tap for Klaviyo on singer-sdk.

Importing the tap loads singer-sdk, requests, jsonschema and their dependencies: about
half a million objects, all alive until the process ends. With the default thresholds
the garbage collector scanned them again and again as they were created (~50 ms, a
tenth of a sync's start-up CPU). The thresholds a sync uses anyway
(:func:`tap_klaviyo.concurrency.tune_gc`) are set here, before any of those imports.
"""

import gc

#: A young collection every 70,000 allocations instead of 700: JSON pages (and imports)
#: make objects by the ten thousand that die by reference counting, or live for good.
GC_THRESHOLDS = (70_000, 20, 100)

gc.set_threshold(*GC_THRESHOLDS)
