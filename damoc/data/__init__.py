"""Dataset I/O: load the common fine-tuning shapes from JSONL/JSON/CSV/Parquet/`save_to_disk` folders (or a
LLaMA-Factory `dataset_info.json:NAME`) into one sample type, report problems with file, line and field, write
subsets back out. `resolve_source(ref)` is the one check that a dataset reference names data."""
from damoc.data.sample import Sample
from damoc.data.io import LoadResult, Problem, Source, load_samples, resolve_source, write_samples
from damoc.data.inspect import inspect_dataset

__all__ = ["Sample", "LoadResult", "Problem", "Source", "load_samples", "resolve_source", "write_samples",
           "inspect_dataset"]
