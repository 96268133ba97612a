"""The Chinese catalogue covers every marked message; amounts, units and ID masking."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from syncd.core import i18n
from syncd.core.errors import UsageError
from syncd.present.tables import Column, Kind
from tests.conftest import REPO

KEYWORDS = {"N_": None, "NP_": ((1, "c"), 2)}


def _catalogue() -> dict[tuple[str | None, str], str]:
    po = REPO / "syncd" / "locale" / "zh" / "LC_MESSAGES" / "syncd.po"
    with po.open("rb") as f:
        catalog = read_po(f)
    return {(m.context, str(m.id)): str(m.string) for m in catalog if m.id and not m.fuzzy}


def test_every_marked_message_has_a_chinese_translation() -> None:
    """What `pybabel extract -F babel.cfg` finds in syncd/ (N_, NP_ in the code, _ in the
    console's templates), translated, no placeholder lost."""
    catalogue = _catalogue()
    found = {
        (context, message)
        for _file, _line, message, _comments, context in extract_from_dir(
            REPO / "syncd", keywords=KEYWORDS, comment_tags=()
        )
    }
    templates = {  # the console's Jinja2 templates call _() (babel.cfg)
        (context, message)
        for _file, _line, message, _comments, context in extract_from_dir(
            REPO / "syncd" / "console" / "templates",
            method_map=[("**.html", "jinja2")],
            keywords={"_": None},
            comment_tags=(),
        )
    }
    assert (None, "Sign in") in templates
    found |= templates
    assert len(found) > 100
    missing = sorted(str(m) for m in found if not catalogue.get(m))
    assert missing == []
    for (_context, message), translation in catalogue.items():  # {fields} kept
        for field in ("{label}", "{unit}", "{minimum}"):
            assert (field in message) == (field in translation), message
    unused = sorted(str(m) for m in set(catalogue) - found)
    assert unused == []


def test_every_coded_value_translates() -> None:
    zh = i18n.Translator("zh")
    assert [zh.enum("five_class", v) for v in i18n.ENUMS["five_class"]] == [
        "正常",
        "关注",
        "次级",
        "可疑",
        "损失",
    ]
    assert [zh.enum("customer_type", v) for v in ("individual", "corporate")] == ["个人", "对公"]
    assert zh.enum("tier", "key") == "大客户"
    # An insight's segment code, <customer_type>.<tier>.<age_band>, part by part.
    assert zh.enum("segment", "individual.key.30-39") == "个人 · 大客户 · 30-39岁"
    assert zh.enum("five_class", "unheard_of") == "unheard_of"
    assert i18n.Translator("en").enum("warning", "non_performing") == "non-performing"
    assert i18n.Translator("zh-CN").lang == "zh"


def test_unknown_language_names_the_option() -> None:
    with pytest.raises(UsageError, match=r"--lang 'fr': choose one of zh, en"):
        i18n.check_lang("fr")
    with pytest.raises(UsageError, match=r"--unit 'k': choose one of yuan, wan"):
        i18n.check_unit("k")


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (Decimal("1234567.885"), i18n.Unit.YUAN, "1,234,567.89"),
        ("0", i18n.Unit.YUAN, "0.00"),
        (Decimal("-2500.5"), i18n.Unit.YUAN, "-2,500.50"),
        (Decimal("254534914.20"), i18n.Unit.WAN, "25,453.49"),
        (1234.5, i18n.Unit.WAN, "0.12"),
        (Decimal("5000"), i18n.Unit.WAN, "0.50"),
    ],
)
def test_amounts(value: object, unit: i18n.Unit, shown: str) -> None:
    assert i18n.format_amount(value, unit) == shown


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("330102198503120019", "330102********0019"),  # resident ID card
        ("33010285031201X", "330102*****201X"),  # a 15-digit card
        ("91330100MA2AAAAA0B", "913301********AA0B"),  # credit code
        ("E12345678", "E1*****78"),  # passport
        ("H1234567", "H1****67"),
        ("AB123", "A***3"),
        ("X9", "**"),
        ("", ""),
        (None, None),
    ],
)
def test_mask_id(number: str | None, masked: str | None) -> None:
    assert i18n.mask_id(number) == masked


def test_column_enum_must_name_a_known_enum() -> None:
    with pytest.raises(ValueError, match="unknown enum"):
        Column("x", "x", Kind.ENUM, enum="nope")
    with pytest.raises(ValueError, match="enum= goes with"):
        Column("x", "x", Kind.TEXT, enum="tier")
