"""Languages, amounts and ID masking for what people read: gettext catalogues through Babel.

Messages are written in English in the code and marked where they are defined, so
`pybabel extract` finds them and the catalogue test checks that each has a translation:

- ``N_("deposits")`` marks a message (a column label, a title); it returns its argument.
- ``NP_("five_class", "loss")`` marks a message with a context (msgctxt), for coded values
  whose English word means different things in different columns; it returns the message.

They are translated when shown, by a `Translator` for one language: ``tr.gettext(msgid)``,
``tr.enum(name, value)`` for a coded value of one of the `ENUMS` (the name is the context).

The catalogues are ``syncd/locale/<lang>/LC_MESSAGES/syncd.po``; only the ``.po`` text is
kept in the repository and in the wheel, and it is compiled in memory the first time a
language is used (Babel's ``read_po`` and ``write_mo``: a few milliseconds), so an editable
install and a wheel both read the same file and a compiled ``.mo`` can never be stale.
English is the messages themselves (no catalogue). To add messages::

    pybabel extract -k N_ -k NP_:1c,2 --no-default-keywords -o /tmp/syncd.pot syncd
    pybabel update -i /tmp/syncd.pot -d syncd/locale -D syncd -l zh --no-fuzzy-matching

then translate the new entries in ``syncd.po`` (tests/unit/test_i18n.py fails on any that is
missing, empty or fuzzy).
"""

from __future__ import annotations

import decimal
import functools
import gettext as _gettext
import io
import re
from decimal import Decimal
from enum import StrEnum
from importlib import resources
from typing import Any

from babel.messages import mofile, pofile
from babel.support import Translations

from syncd.core.errors import UsageError

DOMAIN = "syncd"
DEFAULT_LANG = "zh"
LANGS = ("zh", "en")  # zh: Simplified Chinese (the default); en: the messages as written
_ALIASES = {"zh-cn": "zh", "zh_cn": "zh", "zh-hans": "zh", "en-us": "en", "en_us": "en"}


def N_(message: str) -> str:  # noqa: N802 (the gettext convention pybabel looks for)
    """Mark a message for the catalogue; translated later, where it is shown."""
    return message


def NP_(context: str, message: str) -> str:  # noqa: N802
    """Mark a message with its context (a coded value's column) for the catalogue."""
    return message


# Coded values the reports show, per column kind: value -> message (context: the kind's name).
ENUMS: dict[str, dict[str, str]] = {
    "console_role": {  # the web console's roles (syncd.hub.console_users.Role)
        "manager": NP_("console_role", "manager"),
        "auditor": NP_("console_role", "auditor"),
        "ops": NP_("console_role", "operations"),
        "steward": NP_("console_role", "data steward"),
    },
    "five_class": {
        "normal": NP_("five_class", "normal"),
        "special_mention": NP_("five_class", "special mention"),
        "substandard": NP_("five_class", "substandard"),
        "doubtful": NP_("five_class", "doubtful"),
        "loss": NP_("five_class", "loss"),
    },
    "customer_type": {
        "individual": NP_("customer_type", "individual"),
        "corporate": NP_("customer_type", "corporate"),
    },
    "tier": {
        "key": NP_("tier", "key"),
        "high": NP_("tier", "high"),
        "medium": NP_("tier", "medium"),
        "standard": NP_("tier", "standard"),
    },
    "warning": {
        "risk_tag": NP_("warning", "risk tag"),  # the family, as the reason filter offers it
        "multi_city": NP_("warning", "credit in several cities"),
        "overdue": NP_("warning", "overdue"),
        "non_performing": NP_("warning", "non-performing"),
        "risk_level": NP_("warning", "high risk level"),
        "over_limit": NP_("warning", "loans over the credit limit"),
        "special_mention": NP_("warning", "special-mention loan"),
        "five_class_downgrade": NP_("warning", "five-class downgrade"),
        "exposure_growth": NP_("warning", "credit exposure growth"),
    },
    # Risk tags a CRM sets on a customer (`risk_tag.<tag>` warnings); others show as written.
    "risk_tag": {
        "fraud_alert": NP_("risk_tag", "fraud alert"),
        "aml_suspect": NP_("risk_tag", "suspected money laundering"),
        "aml_review": NP_("risk_tag", "anti-money-laundering review"),
        "sanctioned": NP_("risk_tag", "sanctions list"),
        "litigation": NP_("risk_tag", "litigation"),
        "watchlist": NP_("risk_tag", "watch list"),
        "bankruptcy": NP_("risk_tag", "bankruptcy"),
        "blacklist": NP_("risk_tag", "blacklist"),
        "high_leverage": NP_("risk_tag", "high leverage"),
        "related_party": NP_("risk_tag", "related party"),
        "guarantee_chain": NP_("risk_tag", "guarantee chain"),
    },
    "severity": {
        "1": NP_("severity", "low"),
        "2": NP_("severity", "medium"),
        "3": NP_("severity", "high"),
        "low": NP_("severity", "low"),
        "medium": NP_("severity", "medium"),
        "high": NP_("severity", "high"),
    },
    # Segment values (`report segments`): bands are shown as written, with these words.
    "segment": {
        "unknown": NP_("segment", "unknown"),
        "total": NP_("segment", "total"),
        "none": NP_("segment", "none"),
        "deposit": NP_("segment", "deposits"),
        "loan": NP_("segment", "loans"),
        "fee": NP_("segment", "intermediary business"),
        "individual": NP_("customer_type", "individual"),
        "corporate": NP_("customer_type", "corporate"),
        "key": NP_("tier", "key"),
        "high": NP_("tier", "high"),
        "medium": NP_("tier", "medium"),
        "standard": NP_("tier", "standard"),
    },
    "id_type": {
        "ric": NP_("id_type", "resident ID card"),
        "uscc": NP_("id_type", "unified social credit code"),
        "passport": NP_("id_type", "passport"),
        "hmt_permit": NP_("id_type", "HK/Macao/Taiwan permit"),
        "fpr_card": NP_("id_type", "foreign permanent resident card"),
    },
    "customer_status": {
        "prospect": NP_("customer_status", "prospect"),
        "active": NP_("customer_status", "active"),
        "dormant": NP_("customer_status", "dormant"),
        "closed": NP_("customer_status", "closed"),
    },
    "deposit_product": {
        "current": NP_("deposit_product", "current"),
        "fixed": NP_("deposit_product", "fixed term"),
        "notice": NP_("deposit_product", "notice"),
        "large_cd": NP_("deposit_product", "large certificate of deposit"),
    },
    "account_status": {
        "open": NP_("account_status", "open"),
        "frozen": NP_("account_status", "frozen"),
        "closed": NP_("account_status", "closed"),
    },
    "loan_product": {
        "mortgage": NP_("loan_product", "mortgage"),
        "consumer": NP_("loan_product", "consumer"),
        "business": NP_("loan_product", "business"),
        "working_capital": NP_("loan_product", "working capital"),
        "credit_card": NP_("loan_product", "credit card"),
    },
    "business_type": {
        "wealth": NP_("business_type", "wealth management"),
        "fund": NP_("business_type", "fund"),
        "insurance": NP_("business_type", "insurance agency"),
        "settlement": NP_("business_type", "settlement"),
        "forex": NP_("business_type", "foreign exchange"),
        "custody": NP_("business_type", "custody"),
    },
    # Audit log actions (syncd.hub.audit.Action and the console's own); others as written.
    "audit_action": {
        "batch_applied": NP_("audit_action", "batch applied"),
        "batch_refused": NP_("audit_action", "batch refused"),
        "batch_duplicate": NP_("audit_action", "duplicate batch"),
        "row_applied": NP_("audit_action", "row applied"),
        "refused_row": NP_("audit_action", "row refused"),
        "stale": NP_("audit_action", "stale version ignored"),
        "quarantined": NP_("audit_action", "row quarantined"),
        "quarantine_retried": NP_("audit_action", "quarantined row retried"),
        "quarantine_superseded": NP_("audit_action", "quarantined row superseded"),
        "conflict_opened": NP_("audit_action", "conflict opened"),
        "conflict_proposed": NP_("audit_action", "conflict resolution proposed"),
        "conflict_resolved": NP_("audit_action", "conflict resolved"),
        "conflict_superseded": NP_("audit_action", "conflict superseded"),
        "node_registered": NP_("audit_action", "node registered"),
        "node_credentials_rotated": NP_("audit_action", "node credentials rotated"),
        "node_renamed": NP_("audit_action", "node renamed"),
        "ids_unmasked": NP_("audit_action", "full ID numbers shown"),
        "reconcile": NP_("audit_action", "reconcile"),
        "insights_sent": NP_("audit_action", "insights sent"),
        "insights_resend": NP_("audit_action", "insights sent again"),
        "row_decisions": NP_("audit_action", "row decisions"),
        "console_signin": NP_("audit_action", "console sign-in"),
        "console_signin_failed": NP_("audit_action", "failed console sign-in"),
        "console_user_changed": NP_("audit_action", "console user changed"),
    },
    "bool": {
        "true": NP_("bool", "yes"),
        "false": NP_("bool", "no"),
    },
}


_CUSTOMER_TYPES = frozenset(ENUMS["customer_type"].values())


def check_lang(lang: str | None) -> str:
    """The language code for `--lang` (zh by default); UsageError names the option."""
    if lang is None:
        return DEFAULT_LANG
    code = _ALIASES.get(lang.strip().lower(), lang.strip().lower())
    if code not in LANGS:
        raise UsageError(f"--lang {lang!r}: choose one of {', '.join(LANGS)}")
    return code


@functools.cache
def translations(lang: str) -> _gettext.NullTranslations:
    """The compiled catalogue of a language (English: the messages as they are)."""
    if check_lang(lang) == "en":
        return _gettext.NullTranslations()
    po = resources.files("syncd") / "locale" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    with po.open("rb") as f:
        catalog = pofile.read_po(f, locale="zh_Hans_CN" if lang == "zh" else lang, domain=DOMAIN)
    compiled = io.BytesIO()
    mofile.write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


class Translator:
    """Messages of one language: `gettext`, `pgettext`, `enum`, `fmt`."""

    def __init__(self, lang: str | None = None) -> None:
        self.lang = check_lang(lang)
        self._t = translations(self.lang)

    def gettext(self, message: str) -> str:
        return self._t.gettext(message)

    def pgettext(self, context: str, message: str) -> str:
        return self._t.pgettext(context, message)

    def fmt(self, message: str, **values: Any) -> str:
        """A translated message with {named} fields filled in."""
        return self.gettext(message).format(**values)

    def enum(self, name: str, value: Any) -> str:
        """A coded value of ENUMS[name] as people say it; an unknown value as it is.

        Two kinds are partly made of parts: warnings (`risk_tag.<tag>`, `overdue_<a>_<b>`,
        `overdue_over_<n>`, whose bands are config) and segment values (`deposit+loan`, age
        and tenure bands such as `30-39`, `<1y`, `10y+`).
        """
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value)
        message = ENUMS[name].get(text)
        if message is not None:
            context = "customer_type" if message in _CUSTOMER_TYPES else name
            context = "tier" if name == "segment" and text in ENUMS["tier"] else context
            return self.pgettext(context, message)
        if name == "warning":
            return self._warning(text)
        if name == "segment":
            return self._segment(text)
        return text

    def _warning(self, code: str) -> str:
        if code.startswith("risk_tag."):
            return self.fmt(N_("risk tag: {tag}"), tag=self.enum("risk_tag", code[9:]))
        match = re.fullmatch(r"overdue_(\d+)_(\d+)", code)
        if match:
            return self.fmt(N_("overdue {low}-{high} days"), low=match[1], high=match[2])
        match = re.fullmatch(r"overdue_over_(\d+)", code)
        if match:
            return self.fmt(N_("overdue over {days} days"), days=match[1])
        return code

    def _segment(self, value: str) -> str:
        if "." in value:  # an insight's segment code: <customer_type>.<tier>.<age_band>
            return " · ".join(self.enum("segment", part) for part in value.split("."))
        if "+" in value and not value.endswith("+"):  # products held: deposit+loan
            return self.gettext(N_("+")).join(self.enum("segment", v) for v in value.split("+"))
        match = re.fullmatch(r"(\d+)-(\d+)", value)
        if match:
            return self.fmt(N_("{low}-{high} years old"), low=match[1], high=match[2])
        match = re.fullmatch(r"(\d+)\+", value)
        if match:
            return self.fmt(N_("{years} years old and over"), years=match[1])
        match = re.fullmatch(r"<(\d+)y", value)
        if match:
            return self.fmt(N_("customer for less than {years} years"), years=match[1])
        match = re.fullmatch(r"(\d+)-(\d+)y", value)
        if match:
            return self.fmt(N_("customer for {low}-{high} years"), low=match[1], high=match[2])
        match = re.fullmatch(r"(\d+)y\+", value)
        if match:
            return self.fmt(N_("customer for {years} years and more"), years=match[1])
        return value

    @property
    def list_separator(self) -> str:
        return self.gettext(N_(", "))


# --- amounts -------------------------------------------------------------------------------


class Unit(StrEnum):
    """What amounts are shown in: 元 or 万元 (ten thousand yuan)."""

    YUAN = "yuan"
    WAN = "wan"

    @property
    def divisor(self) -> Decimal:
        return Decimal(1) if self is Unit.YUAN else Decimal(10_000)

    @property
    def label(self) -> str:
        """The unit's message (translate it): 元 or 万元."""
        return N_("yuan") if self is Unit.YUAN else N_("10k yuan")


def check_unit(unit: str | None) -> Unit:
    if unit is None:
        return Unit.YUAN
    try:
        return Unit(unit.strip().lower())
    except ValueError:
        raise UsageError(
            f"--unit {unit!r}: choose one of {', '.join(u.value for u in Unit)}"
        ) from None


def to_decimal(value: Any) -> Decimal:
    """An amount as a Decimal: floats by their shortest repr, so 0.1 stays 0.1."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def in_unit(value: Any, unit: Unit) -> Decimal:
    """An amount in yuan expressed in `unit`, exactly (no rounding)."""
    return to_decimal(value) / unit.divisor


def format_amount(value: Any, unit: Unit = Unit.YUAN) -> str:
    """An amount with thousands separators and 2 decimals (half up) in `unit`: 12,345.68."""
    amount = in_unit(value, unit).quantize(Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)
    return f"{amount:,.2f}"


def format_count(value: Any) -> str:
    return f"{int(value):,}"


# --- ID numbers ----------------------------------------------------------------------------

MASK = "*"


# A resident ID number (18 or 15 digits) standing alone in a text: what `mask_ids(in_text=True)`
# masks inside strings (a reason, a detail) beside the values of id_number fields.
_RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])(?:\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")


def mask_ids(data: Any, *, in_text: bool = False) -> Any:
    """Decoded JSON with every id_number field's value masked, at any depth; with in_text,
    also each resident ID number standing alone in any string."""
    if isinstance(data, dict):
        return {
            k: mask_id(v)
            if k == "id_number" and isinstance(v, str)
            else mask_ids(v, in_text=in_text)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [mask_ids(v, in_text=in_text) for v in data]
    if in_text and isinstance(data, str):
        return _RESIDENT_ID.sub(lambda m: str(mask_id(m[0])), data)
    return data


def mask_id(number: Any) -> Any:
    """An ID number with its middle masked, its length kept; None (or not a string) as it is.

    18 or 15 characters and longer (resident ID cards, credit codes): the first 6 (the region)
    and the last 4 stay, ``330102********1234``. 8 to 14 (passports, permits): the first 2 and
    the last 2, ``E1*****78``. 4 to 7: the first and the last. Shorter: all masked.
    """
    if not isinstance(number, str):
        return number
    n = len(number)
    head, tail = (6, 4) if n >= 15 else (2, 2) if n >= 8 else (1, 1) if n >= 4 else (0, 0)
    return number[:head] + MASK * (n - head - tail) + number[n - tail :]
