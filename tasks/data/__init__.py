"""Getting the MNIST-format data and turning it into train/validation/test splits on disk.

- `download`: the four gzip'd IDX files, downloaded from public mirrors and verified against
  published sha256 sums, or used in place from a local folder; identified by a digest of their
  decompressed content.
- `idx`: reading and checking one IDX file.
- `prepare`: pixels to floats, the validation split, the `.npz` under `data/processed/`.
- `cache`: the manifests that say why a stage was cached or ran.
- `xor`: the generated XOR cloud (data.source: xor).
"""


class DataError(RuntimeError):
    """A data file that cannot be fetched or read. The message names the file and what to do."""
