"""Kiln's pipeline worker: runs the flows of a Delta Live Tables update on a Sail
engine over Spark Connect. Kiln decides what each flow reads and records its
progress; this package binds the inputs, evaluates expectations and writes Delta."""
