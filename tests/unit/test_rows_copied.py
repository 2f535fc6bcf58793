"""A row's values are copied deeply: what a fold changes in a state never reaches the row it was read from."""

import copy

from tailor.rows import copied


def test_a_copy_is_equal_and_shares_no_dict_or_list_with_the_original():
    row = {"counts": {"view": 3, "nested": {"a": [1, 2.5, None, True]}}, "items": ["i1", ["x"]], "name": "s"}

    copy_ = copied(row)
    copy_["counts"]["nested"]["a"].append(9)
    copy_["items"][1].append("y")
    copy_["counts"]["view"] = 4

    assert row == {"counts": {"view": 3, "nested": {"a": [1, 2.5, None, True]}}, "items": ["i1", ["x"]], "name": "s"}
    assert copied(row) == copy.deepcopy(row)


def test_values_of_other_kinds_are_copied_as_deepcopy_copies_them():
    tags = {"a", "b"}
    row = {"tags": tags, "pair": (1, [2]), "raw": bytearray(b"ab")}

    copy_ = copied(row)
    copy_["pair"][1].append(3)
    copy_["raw"].append(0x63)

    assert copy_["tags"] == tags and copy_["tags"] is not tags
    assert row["pair"] == (1, [2]) and row["raw"] == bytearray(b"ab")
