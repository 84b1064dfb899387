"""Simulated cohorts for the demo: msprime genotypes, written as VCF, imported like any dataset.

Three chromosomes of a few megabases per cohort (tens of thousands of variants
for a few hundred people), and a case/control phenotype table in the project's
shared folder, where cases are more likely to carry one common variant: the
example notebook's association scan finds it.
"""

from __future__ import annotations

import csv
import gzip
import os
import re
from pathlib import Path

import numpy as np

CHROMOSOMES = ("chr1", "chr2", "chr3")


def simulate(path: Path, samples: int, length: float, seed: int, prefix: str) -> np.ndarray:
    """Write a gzip VCF of ``samples`` diploid people; return their dosages of a common variant mid-chr2."""
    import msprime

    dosage = None
    with gzip.open(path, "wt", compresslevel=1) as out:
        for n, chrom in enumerate(CHROMOSOMES):
            ts = msprime.sim_ancestry(samples, sequence_length=length, recombination_rate=1e-8,
                                      population_size=10_000, random_seed=seed + n)
            ts = msprime.sim_mutations(ts, rate=1e-8, random_seed=seed + n, model=msprime.BinaryMutationModel())
            text = _vcf(ts, chrom, prefix)
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


def _vcf(ts, chrom: str, prefix: str) -> str:
    import io

    buf = io.StringIO()
    names = sample_ids(prefix, ts.num_individuals)
    # tskit writes 0-based positions, invalid in VCF: shift by one
    ts.write_vcf(buf, contig_id=chrom, individual_names=names, position_transform=lambda p: np.asarray(p, int) + 1)
    return buf.getvalue()


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
