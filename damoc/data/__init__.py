"""Dataset I/O: load the common fine-tuning shapes from JSONL/JSON/CSV/Parquet/`save_to_disk` folders into one
sample type, report problems with file, line and field, write subsets back out."""
from damoc.data.sample import Sample
from damoc.data.io import LoadResult, Problem, load_samples, write_samples
from damoc.data.inspect import inspect_dataset

__all__ = ["Sample", "LoadResult", "Problem", "load_samples", "write_samples", "inspect_dataset"]
