"""Measurement: everything that tells how well and how fast the detector works, apart from the detector.

* :mod:`detector.bench.scenarios`: labelled scenarios (the default suite and a realistic fleet week),
  their generator and their scorer (``detector bench scenarios``);
* :mod:`detector.bench.nab`: the Numenta Anomaly Benchmark runner and scorer (``detector bench nab``);
* :mod:`detector.bench.replay`, :mod:`detector.bench.scale`, :mod:`detector.bench.kafka`: throughput
  against a baseline measured in the same run (``detector bench replay|scale|kafka``);
* :mod:`detector.bench.detectors`, :mod:`detector.bench.route_detectors`: the cost of one detector update
  and of one route's window (``python -m detector.bench.detectors``);
* :mod:`detector.bench.label_floor`, :mod:`detector.bench.label_oracle`, :mod:`detector.bench.ramp_oracle`:
  how soon anything could have seen each fleet label, beside when the detector did
  (``python -m detector.bench.label_oracle DIR/seed-N ...``).

Only the command line reaches into it (``detector bench ...``); the service and the pipeline never import it.
"""
