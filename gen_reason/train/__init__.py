"""Training: the embedded default model (:mod:`gen_reason.train.embedded`) and its data
(:mod:`gen_reason.train.data`). Nothing heavy is imported here; import the submodules."""
