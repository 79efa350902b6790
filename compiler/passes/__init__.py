"""The IR passes, each its own module with one job, run in this order by
compiler/pipeline.py: normalise predicates, intern them, merge statistics,
collect parse layers."""
