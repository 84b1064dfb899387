"""Simulated cohorts: msprime genotypes written as VCF (for the demo, the tests and the benchmarks).

Three chromosomes of a few megabases per cohort (tens of thousands of variants
for a few hundred people), and a case/control phenotype table in the project's
shared folder, where cases are more likely to carry one common variant: the
example notebook's association scan finds it.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
from pathlib import Path

import numpy as np

CHROMOSOMES = ("chr1", "chr2", "chr3")


def ancestry(samples: int, length: float, seed: int, mutation_rate: float = 1e-8, model=None,
             recombination_rate: float = 1e-8, population_size: int = 10_000):
    """A tree sequence of ``samples`` diploid people with mutations (msprime; JC69 unless ``model``)."""
    import msprime

    ts = msprime.sim_ancestry(samples, sequence_length=length, recombination_rate=recombination_rate,
                              population_size=population_size, random_seed=seed)  # fmt: skip
    return msprime.sim_mutations(ts, rate=mutation_rate, random_seed=seed, model=model)


def write_vcf(ts, out, contig: str, names: list[str] | None = None) -> None:
    """The one msprime-to-VCF writer: ``ts`` as VCF text into the file object ``out``.

    tskit writes 0-based positions, invalid in VCF: they are shifted by one.
    """
    ts.write_vcf(out, contig_id=contig, individual_names=names,
                 position_transform=lambda p: np.asarray(p, dtype=np.int64) + 1)  # fmt: skip


def vcf_text(ts, contig: str, names: list[str] | None = None) -> str:
    buf = io.StringIO()
    write_vcf(ts, buf, contig, names)
    return buf.getvalue()


def simulate(path: Path, samples: int, length: float, seed: int, prefix: str) -> np.ndarray:
    """Write a gzip VCF of ``samples`` diploid people; return their dosages of a common variant mid-chr2."""
    import msprime

    dosage = None
    names = sample_ids(prefix, samples)
    with gzip.open(path, "wt", compresslevel=1) as out:
        for n, chrom in enumerate(CHROMOSOMES):
            ts = ancestry(samples, length, seed + n, model=msprime.BinaryMutationModel())
            text = vcf_text(ts, chrom, names)
            if n:  # one header for the whole file
                text = text.split("\n#CHROM", 1)[1].split("\n", 1)[1]
            else:
                contigs = "".join(f"##contig=<ID={c},length={int(length) + 1}>\n" for c in CHROMOSOMES)
                text = re.sub(r"##contig=<[^\n]*\n", "", text).replace("#CHROM", contigs + "#CHROM", 1)
            out.write(text)
            if chrom == "chr2":
                dosage = _causal_dosage(ts)
    return dosage


def sample_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def _causal_dosage(ts) -> np.ndarray:
    """Dosage of the site nearest the middle whose allele frequency is between 0.25 and 0.4."""
    middle = ts.sequence_length / 2
    best = None
    for var in ts.variants():
        freq = var.genotypes.mean()
        if 0.25 <= freq <= 0.4 and (best is None or abs(var.site.position - middle) < abs(best[0] - middle)):
            best = (var.site.position, var.genotypes.copy())
    haplotypes = best[1] if best is not None else np.zeros(2 * ts.num_individuals, dtype=np.int8)
    return haplotypes.reshape(-1, 2).sum(axis=1)


def phenotypes(path: Path, sample_ids: list[str], dosage: np.ndarray, seed: int, gid: int) -> None:
    """case/control and age: the log-odds of being a case rise by 1.6 per copy of the causal allele."""
    rng = np.random.default_rng(seed)
    logit = -1.3 + 1.6 * dosage
    case = rng.random(len(dosage)) < 1 / (1 + np.exp(-logit))
    age = rng.integers(35, 80, len(dosage))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sample_id", "status", "age"])
        for sid, c, a in zip(sample_ids, case, age, strict=True):
            w.writerow([sid, "case" if c else "control", int(a)])
    os.chown(tmp, 0, gid)
    os.chmod(tmp, 0o640)
    os.rename(tmp, path)
