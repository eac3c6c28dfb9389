"""Research analyses built on cramlens: downstream evaluation, knockout sweeps and attention sinks, and more."""
