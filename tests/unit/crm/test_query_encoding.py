"""Queries: plain fields by the standard library, nested ones by qs-codec — the same bytes."""

from __future__ import annotations

import qs_codec as qs
from hypothesis import given
from hypothesis import strategies as st

from pipeline.crm.wire import encode_query

names = st.text(min_size=1, max_size=12)
scalars = st.one_of(st.text(max_size=30), st.integers(), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False))


def by_qs(params: dict[str, object]) -> str:
    wire = {k: ("1" if v else "0") if isinstance(v, bool) else v for k, v in params.items()}
    return str(qs.encode(wire, qs.EncodeOptions(list_format=qs.ListFormat.BRACKETS)))


@given(st.dictionaries(names, scalars, max_size=6))
def test_a_query_of_plain_fields_is_encoded_as_qs_codec_encodes_it(
        params: dict[str, object]) -> None:
    assert encode_query(params) == by_qs(params)


def test_the_manager_lookup_s_query_and_a_nested_filter() -> None:
    assert encode_query({"phone": "+380 50 111/22", "details": True}) == \
        "phone=%2B380%2050%20111%2F22&details=1"
    assert encode_query({"filter": {"phone": "+380501112233", "sites": ["main"]}, "page": 1}) \
        == "filter%5Bphone%5D=%2B380501112233&filter%5Bsites%5D%5B%5D=main&page=1"
