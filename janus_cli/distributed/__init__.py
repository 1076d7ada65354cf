"""`--engine ray`: the command line's batch runs as Ray Data jobs.

The driver (the `janus` process) plans the work exactly as the local engine does — the same
items, the same batches, the same seeds — and hands each batch to Ray as one row; actors that
hold the model answer them, and the driver writes every result (PNG, manifest line, stdout) as
it arrives. Ray is imported only here, and only for `--engine ray`.
"""
