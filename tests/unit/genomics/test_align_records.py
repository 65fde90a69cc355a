"""CIGAR conversion, pair flags, mate fields and TLEN built from mappy-like hits."""

from __future__ import annotations

from dataclasses import dataclass, field

import pysam
import pytest

from examples.genomics.tools import align
from examples.genomics.tools.common import ToolError


@dataclass
class Hit:
    """The fields of mappy.Alignment that align.py reads."""

    ctg: str
    r_st: int
    r_en: int
    q_st: int
    q_en: int
    strand: int
    cigar: list[list[int]] = field(default_factory=lambda: [[150, 0]])
    mapq: int = 60
    NM: int = 0
    is_primary: bool = True
    read_num: int = 1


def header() -> pysam.AlignmentHeader:
    return pysam.AlignmentHeader.from_dict(
        {"SQ": [{"SN": "chr1", "LN": 10_000}, {"SN": "chr2", "LN": 5_000}], "RG": [{"ID": "S01", "SM": "S01"}]}
    )


def test_cigar_swaps_length_and_op_and_adds_soft_clips_on_plus_strand() -> None:
    cigar = align.to_pysam_cigar([[100, 0], [2, 1], [40, 0], [3, 2], [5, 0]], q_st=3, q_en=150, query_length=152,
                                 strand=1)
    assert cigar == [(4, 3), (0, 100), (1, 2), (0, 40), (2, 3), (0, 5), (4, 2)]


def test_cigar_on_minus_strand_puts_the_read_end_clip_first() -> None:
    # The read is stored reverse-complemented: its unaligned 3' end (150 - 140 = 10) leads.
    cigar = align.to_pysam_cigar([[135, 0]], q_st=5, q_en=140, query_length=150, strand=-1)
    assert cigar == [(4, 10), (0, 135), (4, 5)]


def test_cigar_that_does_not_cover_the_read_is_refused() -> None:
    with pytest.raises(ToolError, match="covers 140 bases of a 150 bp read"):
        align.to_pysam_cigar([[140, 0]], q_st=0, q_en=150, query_length=150, strand=1)


def test_reverse_complement() -> None:
    assert align.reverse_complement("AACGTN") == "NACGTT"


def test_proper_pair_needs_same_contig_opposite_strands_and_short_span() -> None:
    fwd = Hit("chr1", 100, 250, 0, 150, 1)
    rev = Hit("chr1", 300, 450, 0, 150, -1, read_num=2)
    assert align.is_proper(fwd, rev)
    assert not align.is_proper(fwd, Hit("chr1", 300, 450, 0, 150, 1))
    assert not align.is_proper(fwd, Hit("chr2", 300, 450, 0, 150, -1))
    assert not align.is_proper(fwd, Hit("chr1", 5000, 5150, 0, 150, -1))
    # Facing away from each other (reverse read entirely left of the forward one): not proper.
    assert not align.is_proper(Hit("chr1", 600, 750, 0, 150, 1), Hit("chr1", 100, 250, 0, 150, -1))


def test_template_length_is_positive_on_the_leftmost_mate() -> None:
    left, right = Hit("chr1", 100, 250, 0, 150, 1), Hit("chr1", 300, 450, 0, 150, -1)
    assert align.template_length(left, right, is_first=False) == 350
    assert align.template_length(right, left, is_first=True) == -350
    assert align.template_length(left, Hit("chr2", 0, 150, 0, 150, -1), True) == 0


def test_pair_records_carry_flags_mate_fields_read_group_and_reverse_complemented_reads() -> None:
    builder = align.RecordBuilder(header(), "S01")
    reads = (align.Read("p1", "A" * 149 + "C", "I" * 150), align.Read("p1", "G" * 150, "#" + "5" * 149))
    hits = (Hit("chr1", 100, 250, 0, 150, 1), Hit("chr1", 300, 450, 0, 150, -1, read_num=2))
    first, second = builder.pair(reads, hits)
    assert first.flag == 0x1 | 0x2 | 0x20 | 0x40 == 99
    assert second.flag == 0x1 | 0x2 | 0x10 | 0x80 == 147
    assert (first.next_reference_start, second.next_reference_start) == (300, 100)
    assert (first.template_length, second.template_length) == (350, -350)
    assert second.query_sequence == "C" * 150  # reverse complement of G*150
    assert second.query_qualities[-1] == 2  # "#" (Q2) was the first base; reversed to the end
    assert first.get_tag("RG") == second.get_tag("RG") == "S01"
    assert first.cigartuples == [(0, 150)]


def test_one_unmapped_mate_sits_at_the_mapped_mates_position() -> None:
    builder = align.RecordBuilder(header(), "S01")
    reads = (align.Read("p2", "A" * 150, "I" * 150), align.Read("p2", "T" * 150, "I" * 150))
    mapped, unmapped = builder.pair(reads, (Hit("chr2", 40, 190, 0, 150, -1), None))
    assert mapped.flag == 0x1 | 0x8 | 0x10 | 0x40
    assert unmapped.flag == 0x1 | 0x4 | 0x20 | 0x80
    assert unmapped.reference_name == mapped.reference_name == "chr2"
    assert unmapped.reference_start == mapped.reference_start == 40
    assert mapped.next_reference_start == 40 and mapped.template_length == 0
    assert not mapped.is_proper_pair


def test_primary_hits_takes_the_first_primary_per_mate() -> None:
    secondary = Hit("chr1", 0, 150, 0, 150, 1, is_primary=False, read_num=1)
    best1 = Hit("chr1", 10, 160, 0, 150, 1, read_num=1)
    later1 = Hit("chr2", 10, 160, 0, 150, 1, read_num=1)
    assert align.primary_hits([secondary, best1, later1]) == (best1, None)
