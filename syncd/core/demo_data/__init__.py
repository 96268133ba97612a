"""Seeded, realistic demo data for the CRM of several Zhejiang cities, as rows per table.

Pure: no database code. `generate` returns, per city code, the rows of every table declared in
`schemas/crm.yaml` (decimals as `Decimal`, dates as `date`, timestamps as naive UTC `datetime`,
`risk_tags` as a list of strings), and a `Manifest` of what was seeded on purpose: customers
shared by several cities, prospects, rows with invalid ID numbers, corporates. Interest rates are
annual rates in percent (`Decimal("1.3500")` is 1.35 %). The same seed gives the same data.

Identity numbers are built from real administrative division codes; python-stdnum computes every
check digit (Faker's `ssn()` uses codes stdnum does not know). Names, streets, company name parts
and mobile prefixes come from Faker's zh_CN provider, drawn once into pools and then sampled with
a seeded `random.Random`, because calling Faker per row is too slow for 100k customers.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import gc
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Generic, NamedTuple, TypeVar

from faker import Faker
from stdnum.cn import ric, uscc

Row = dict[str, Any]

PROVINCE: Final = "浙江省"
AS_OF: Final = dt.datetime(2026, 6, 30, 16, 0)
TABLES: Final = (
    "customers",
    "deposit_accounts",
    "loans",
    "intermediary_business",
    "opportunities",
    "sales_activities",
    "service_activities",
)
# The bank's CRM went live then: no customer row is older.
CRM_START: Final = dt.datetime(2008, 1, 1)
INVALID_ID_REASONS: Final = ("check_digit", "birth_date", "length")


# ---------------------------------------------------------------------------------------------
# Geography


@dataclass(frozen=True)
class District:
    """A county-level division (区, 县, 县级市) by its 6-digit administrative division code."""

    code: str
    name: str
    # A code reused for another place in other years is used for ID numbers only in these years.
    years: tuple[int | None, int | None] = (None, None)


@dataclass(frozen=True)
class City:
    """A prefecture-level city of Zhejiang, with some of its county-level divisions."""

    code: str
    name: str
    # Approximate resident population in 10k, so that bigger cities get more customers.
    weight: int
    # Current divisions: addresses and credit codes.
    districts: tuple[District, ...]
    # Earlier codes of the same places, which older residents' ID numbers still carry.
    former: tuple[District, ...] = ()

    @property
    def short_name(self) -> str:
        """The name without 市, as company names use it (杭州, 宁波)."""
        return self.name.removesuffix("市")


def _d(code: str, name: str, first: int | None = None, last: int | None = None) -> District:
    return District(code, name, (first, last))


CITIES: Final[list[City]] = [
    City(
        "3301", "杭州市", 1252,
        (_d("330102", "上城区"), _d("330105", "拱墅区"), _d("330106", "西湖区"),
         _d("330108", "滨江区"), _d("330109", "萧山区"), _d("330110", "余杭区"),
         _d("330122", "桐庐县"), _d("330127", "淳安县")),
        (_d("330103", "下城区"), _d("330104", "江干区"), _d("330120", "市区"),
         _d("330121", "萧山县"), _d("330125", "余杭县")),
    ),
    City(
        "3302", "宁波市", 969,
        (_d("330203", "海曙区"), _d("330205", "江北区"), _d("330206", "北仑区"),
         _d("330211", "镇海区"), _d("330212", "鄞州区"), _d("330213", "奉化区"),
         _d("330225", "象山县"), _d("330226", "宁海县"), _d("330281", "余姚市"),
         _d("330282", "慈溪市")),
        (_d("330204", "江东区"), _d("330220", "市区"), _d("330227", "鄞县"),
         _d("332224", "象山县"), _d("332226", "鄞县")),
    ),
    City(
        "3303", "温州市", 976,
        (_d("330302", "鹿城区"), _d("330303", "龙湾区"), _d("330304", "瓯海区"),
         _d("330305", "洞头区"), _d("330324", "永嘉县"), _d("330326", "平阳县"),
         _d("330327", "苍南县"), _d("330381", "瑞安市"), _d("330382", "乐清市")),
        (_d("330320", "市区"), _d("330323", "乐清县"), _d("330325", "瑞安县")),
    ),
    City(
        "3304", "嘉兴市", 558,
        (_d("330402", "南湖区"), _d("330411", "秀洲区"), _d("330421", "嘉善县"),
         _d("330424", "海盐县"), _d("330481", "海宁市"), _d("330482", "平湖市"),
         _d("330483", "桐乡市")),
        (_d("332102", "嘉兴市"), _d("332122", "嘉善县"), _d("332124", "海宁县"),
         _d("332126", "桐乡县")),
    ),
    City(
        "3305", "湖州市", 344,
        (_d("330502", "吴兴区"), _d("330503", "南浔区"), _d("330521", "德清县"),
         _d("330522", "长兴县"), _d("330523", "安吉县")),
        (_d("332101", "湖州市"), _d("332127", "德清县"), _d("332129", "长兴县"),
         _d("332130", "安吉县")),
    ),
    City(
        "3306", "绍兴市", 538,
        (_d("330602", "越城区"), _d("330603", "柯桥区"), _d("330604", "上虞区"),
         _d("330624", "新昌县"), _d("330681", "诸暨市"), _d("330683", "嵊州市")),
        (_d("330621", "绍兴县"), _d("330682", "上虞市"), _d("332301", "绍兴市"),
         _d("332322", "上虞县"), _d("332325", "诸暨县")),
    ),
    City(
        "3307", "金华市", 713,
        (_d("330702", "婺城区"), _d("330703", "金东区"), _d("330723", "武义县"),
         _d("330726", "浦江县"), _d("330727", "磐安县"), _d("330781", "兰溪市"),
         _d("330782", "义乌市"), _d("330783", "东阳市"), _d("330784", "永康市")),
        (_d("330721", "金华县"), _d("332401", "金华市"), _d("332501", "金华市"),
         _d("332523", "永康县"), _d("332525", "东阳县"), _d("332526", "义乌县")),
    ),
    City(
        "3308", "衢州市", 229,
        (_d("330802", "柯城区"), _d("330803", "衢江区"), _d("330822", "常山县"),
         _d("330824", "开化县"), _d("330825", "龙游县"), _d("330881", "江山市")),
        (_d("330821", "衢县"), _d("332402", "衢州市"), _d("332502", "衢州市"),
         _d("332529", "常山县"), _d("332530", "江山县")),
    ),
    City(
        "3309", "舟山市", 117,
        (_d("330902", "定海区"), _d("330903", "普陀区"), _d("330921", "岱山县"),
         _d("330922", "嵊泗县")),
        (_d("332721", "定海县", 1983, 1987), _d("332722", "普陀县", 1983, 1987),
         _d("332821", "定海县", None, 1982), _d("332822", "普陀县", None, 1982)),
    ),
    City(
        "3310", "台州市", 668,
        (_d("331002", "椒江区"), _d("331003", "黄岩区"), _d("331004", "路桥区"),
         _d("331022", "三门县"), _d("331023", "天台县"), _d("331024", "仙居县"),
         _d("331081", "温岭市"), _d("331082", "临海市"), _d("331083", "玉环市")),
        (_d("332601", "椒江市"), _d("332602", "临海市"), _d("332603", "黄岩市"),
         _d("332701", "椒江市"), _d("332721", "临海县", None, 1982),
         _d("332722", "黄岩县", None, 1982), _d("332723", "温岭县", None, 1982)),
    ),
    City(
        "3311", "丽水市", 251,
        (_d("331102", "莲都区"), _d("331121", "青田县"), _d("331122", "缙云县"),
         _d("331123", "遂昌县"), _d("331127", "景宁畲族自治县"), _d("331181", "龙泉市")),
        (_d("332801", "丽水市"), _d("332802", "龙泉市"), _d("332822", "青田县", 1983, 2000),
         _d("332825", "庆元县"), _d("332826", "缙云县"), _d("332827", "遂昌县"),
         _d("332621", "丽水县", None, 1982), _d("332622", "青田县", None, 1982),
         _d("332626", "缙云县", None, 1982)),
    ),
]  # fmt: skip


def cities(n: int) -> list[City]:
    """The first n cities of the province, in code order."""
    if not 1 <= n <= len(CITIES):
        raise ValueError(f"n must be between 1 and {len(CITIES)}, got {n}")
    return CITIES[:n]


def city_by_code(code: str) -> City:
    """The city with this 4-digit code."""
    for c in CITIES:
        if c.code == code:
            return c
    raise KeyError(code)


# ---------------------------------------------------------------------------------------------
# Identity numbers


def national_id(region: str, birth: dt.date, sequence: int) -> str:
    """A resident identity card number (居民身份证号码) whose check digit stdnum computes."""
    body = f"{region}{birth:%Y%m%d}{sequence:03d}"
    # calc_check_digit reads a full number and ignores the check digit in place, hence the "0".
    return body + str(ric.calc_check_digit(body + "0"))


def credit_code(kind: str, region: str, organization: str) -> str:
    """A unified social credit code (统一社会信用代码) whose check character stdnum computes."""
    body = f"{kind}{region}{organization}"
    return body + str(uscc.calc_check_digit(body))


def _usable(district: District, year: int) -> bool:
    """Whether stdnum accepts the code for someone born in that year."""
    low, high = district.years
    if (low is not None and year < low) or (high is not None and year > high):
        return False
    return bool(ric.is_valid(national_id(district.code, dt.date(year, 7, 1), 1)))


@functools.cache
def id_districts(city: City, year: int) -> tuple[District, ...]:
    """Codes of the city that a valid ID number of someone born in `year` can carry."""
    found = tuple(d for d in city.districts + city.former if _usable(d, year))
    if not found:
        raise ValueError(f"no district code of {city.name} is valid for births in {year}")
    return found


# ---------------------------------------------------------------------------------------------
# What generate returns


@dataclass(frozen=True)
class CustomerRef:
    """One city's row of a customer."""

    city_code: str
    customer_id: str
    id_type: str
    id_number: str


@dataclass(frozen=True)
class InvalidCustomer(CustomerRef):
    """A public customer whose ID number is wrong on purpose, for the hub to quarantine."""

    reason: str  # one of INVALID_ID_REASONS


@dataclass(frozen=True)
class SharedCustomer:
    """A person or company that is a customer in several cities."""

    id_type: str
    id_number: str
    name: str
    customer_type: str
    home_city: str
    customer_ids: dict[str, str]  # city code -> that city's customer_id, home city first
    phones: dict[str, str]  # city code -> phone, different in every city
    risk_tags: dict[str, tuple[str, ...]]  # city code -> risk tags
    loan_cities: tuple[str, ...]  # cities where this customer has loans


@dataclass(frozen=True)
class CityCounts:
    """What one city's CRM holds, and what of it the hub should see."""

    customers: int  # rows, prospects included
    public_customers: int  # rows passing the policy's filter, invalid IDs included
    prospects: int
    invalid_ids: int
    corporate: int
    shared: int
    rows: dict[str, int]  # table -> row count


@dataclass(frozen=True)
class Manifest:
    """What was seeded on purpose, for the demo's checks."""

    seed: int
    as_of: dt.datetime
    cities: tuple[str, ...]
    distinct_customers: int
    # Golden records the hub should hold after a full sync: public rows with valid IDs.
    golden_customers: int
    shared: tuple[SharedCustomer, ...]
    prospects: tuple[CustomerRef, ...]
    invalid_ids: tuple[InvalidCustomer, ...]
    corporates: tuple[CustomerRef, ...]
    counts: dict[str, CityCounts]

    @property
    def totals(self) -> CityCounts:
        """The counts summed over the cities."""
        every = list(self.counts.values())
        return CityCounts(
            customers=sum(c.customers for c in every),
            public_customers=sum(c.public_customers for c in every),
            prospects=sum(c.prospects for c in every),
            invalid_ids=sum(c.invalid_ids for c in every),
            corporate=sum(c.corporate for c in every),
            shared=sum(c.shared for c in every),
            rows={t: sum(c.rows[t] for c in every) for t in TABLES},
        )


@dataclass(frozen=True)
class DemoData:
    """Rows per city code and table, and the manifest."""

    tables: dict[str, dict[str, list[Row]]]
    manifest: Manifest


@dataclass(frozen=True)
class Edit:
    """An update to make in one city's CRM: set `changes` on the row `key` of `table`."""

    city_code: str
    table: str
    key: dict[str, Any]
    changes: dict[str, Any]
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Pools drawn from Faker once per seed

_MORE_SUFFIXES = (
    "纺织有限公司", "服饰有限公司", "机械制造有限公司", "五金制品有限公司", "电器有限公司",
    "贸易有限公司", "建设工程有限公司", "食品有限公司", "新材料股份有限公司",
    "汽车零部件有限公司", "物流有限公司", "实业有限公司", "电子商务有限公司",
)  # fmt: skip


@dataclass(frozen=True)
class _Pools:
    # Duplicates are kept: they carry Faker's frequencies (王 and 李 are common surnames).
    surnames: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    streets: tuple[str, ...]
    brands: tuple[str, ...]
    suffixes: tuple[str, ...]
    mobile_prefixes: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def _pools(seed: int) -> _Pools:
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    prefixes = (str(fake.phone_number())[:3] for _ in range(200))
    brands = (str(fake.company_prefix()) for _ in range(400))
    return _Pools(
        surnames=tuple(str(fake.last_name()) for _ in range(400)),
        male=tuple(str(fake.first_name_male()) for _ in range(400)),
        female=tuple(str(fake.first_name_female()) for _ in range(400)),
        streets=tuple(str(fake.street_name()) for _ in range(300)),
        # Some of Faker's prefixes are place names (开发区…): two-character brands read true.
        brands=tuple(b for b in brands if len(b) == 2),
        suffixes=tuple(str(fake.company_suffix()) for _ in range(40)) + _MORE_SUFFIXES,
        # 14x numbers are data cards, not phones a customer gives the bank.
        mobile_prefixes=tuple(p for p in prefixes if not p.startswith("14")),
    )


# ---------------------------------------------------------------------------------------------
# Small helpers

T = TypeVar("T")


class _Rng(random.Random):
    """random.Random with draws built on random() alone, several times faster than choice()."""

    def one(self, seq: Sequence[T]) -> T:
        return seq[int(self.random() * len(seq))]

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def between(self, low: int, high: int) -> int:
        """An integer from low to high, both included."""
        return low + int(self.random() * (high - low + 1))

    def moment(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = (end - start).total_seconds()
        return start + dt.timedelta(seconds=int(self.random() * span)) if span > 0 else start

    def day(self, start: dt.date, end: dt.date) -> dt.date:
        span = end.toordinal() - start.toordinal()
        return dt.date.fromordinal(start.toordinal() + self.below(span)) if span > 0 else start


@dataclass(frozen=True)
class _Weighted(Generic[T]):
    values: tuple[T, ...]
    cumulative: tuple[float, ...]

    def pick(self, rng: _Rng) -> T:
        return self.values[bisect.bisect(self.cumulative, rng.random() * self.cumulative[-1])]


def _weighted(*pairs: tuple[T, float]) -> _Weighted[T]:
    return _Weighted(tuple(v for v, _ in pairs), tuple(itertools.accumulate(w for _, w in pairs)))


def _cents(yuan: float) -> Decimal:
    return Decimal(round(yuan * 100)).scaleb(-2)


def _percent(rate: float) -> Decimal:
    return Decimal(round(rate * 10000)).scaleb(-4)


def _lognormal(rng: _Rng, median: float, sigma: float, low: float, high: float) -> float:
    # gauss() keeps the second value of each pair it draws: twice as fast as lognormvariate().
    return min(max(median * math.exp(rng.gauss(0.0, sigma)), low), high)


def _round_to(value: float, step: float) -> float:
    return max(step, round(value / step) * step)


def _at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def _add_months(day: dt.date, months: int) -> dt.date:
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    # The 31st or 29 February may not exist in the target month: banks then take its last day.
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(day.day, last))


# ---------------------------------------------------------------------------------------------
# Business vocabulary

# guarantee_chain (担保圈) only applies to companies, hence last.
_TAGS = ("high_leverage", "watchlist", "related_party", "aml_review", "guarantee_chain")
FIVE_CLASSES: Final = ("normal", "special_mention", "substandard", "doubtful", "loss")
_FIVE_CLASS = _weighted(*zip(FIVE_CLASSES, (0.90, 0.055, 0.022, 0.013, 0.01), strict=True))
_OVERDUE = {"special_mention": (1, 90), "substandard": (91, 180), "doubtful": (181, 360),
            "loss": (361, 1080)}  # fmt: skip
_CURRENCIES = _weighted(("CNY", 0.94), ("USD", 0.04), ("HKD", 0.01), ("EUR", 0.007), ("JPY", 0.003))
_CNY_PER_UNIT = {"CNY": 1.0, "USD": 7.1, "HKD": 0.91, "EUR": 7.8, "JPY": 0.047}
# Fixed-term deposit rates (percent) at the as-of date; older deposits kept their higher rate.
_FIXED_RATES = {3: 0.65, 6: 0.85, 12: 0.95, 24: 1.05, 36: 1.25, 60: 1.30}
_CD_RATES = {12: 1.20, 24: 1.30, 36: 1.55}


def _era_bonus(opened: dt.date) -> float:
    year = opened.year
    if year <= 2019:
        return 0.8
    if year <= 2022:
        return 0.7
    return {2023: 0.4, 2024: 0.2}.get(year, 0.0)


_WEALTH = ("稳享", "鑫益", "安盈", "睿远", "天天利", "月月盈")
_FUND_THEMES = ("中证500指数增强", "沪深300ETF联接", "新兴产业混合", "纯债债券", "消费精选股票",
                "医疗健康混合", "稳健添利债券", "货币")  # fmt: skip
_INSURANCE = ("增额终身寿险", "年金保险（分红型）", "重大疾病保险", "两全保险", "医疗保险")
_SETTLEMENT = ("代发工资", "单位结算卡", "跨境汇款", "银行承兑汇票", "国内信用证", "代收付")
_CUSTODY = ("资金托管（预售资金监管）", "资金托管（私募基金）", "资金托管（专项资金）")
_BUSINESS_KINDS = {
    "individual": _weighted(("wealth", 0.4), ("fund", 0.25), ("insurance", 0.2), ("forex", 0.1),
                            ("settlement", 0.05)),
    "corporate": _weighted(("settlement", 0.35), ("wealth", 0.2), ("forex", 0.15),
                           ("custody", 0.15), ("fund", 0.1), ("insurance", 0.05)),
}  # fmt: skip
# product_type -> (median amount, sigma, minimum, maximum, lowest fee rate, highest fee rate)
_BUSINESS_TERMS = {
    "wealth": (200_000, 1.0, 10_000, 5_000_000, 0.002, 0.005),
    "fund": (50_000, 1.2, 1_000, 2_000_000, 0.0015, 0.015),
    "insurance": (30_000, 1.0, 5_000, 500_000, 0.03, 0.15),
    "forex": (50_000, 1.2, 1_000, 500_000, 0.001, 0.003),
    "settlement": (500_000, 1.5, 1_000, 50_000_000, 0.0002, 0.001),
    "custody": (50_000_000, 1.0, 5_000_000, 500_000_000, 0.0002, 0.0025),
}
_LOAN_PRODUCTS = {
    "individual": _weighted(("mortgage", 0.35), ("consumer", 0.3), ("credit_card", 0.25),
                            ("business", 0.10)),
    "corporate": _weighted(("working_capital", 0.6), ("business", 0.4)),
}  # fmt: skip
_DEPOSIT_PRODUCTS = {
    "individual": _weighted(("current", 0.5), ("fixed", 0.35), ("notice", 0.05),
                            ("large_cd", 0.10)),
    "corporate": _weighted(("current", 0.55), ("fixed", 0.2), ("notice", 0.15),
                           ("large_cd", 0.10)),
}  # fmt: skip
_CREDIT_KINDS = _weighted(("91", 0.9), ("92", 0.06), ("93", 0.04))
# How many rows of each kind a customer has, by customer type.
_N_DEPOSITS = {
    "individual": _weighted((1, 0.5), (2, 0.35), (3, 0.15)),
    "corporate": _weighted((1, 0.3), (2, 0.4), (3, 0.3)),
}
_N_LOANS = {
    "individual": _weighted((0, 0.55), (1, 0.35), (2, 0.10)),
    "corporate": _weighted((0, 0.3), (1, 0.45), (2, 0.25)),
}
_N_BUSINESS = _weighted((0, 0.35), (1, 0.35), (2, 0.2), (3, 0.1))
_N_SERVICE = _weighted((0, 0.8), (1, 0.15), (2, 0.05))
# (product, customer type) -> (median principal, sigma, min, max, step, term months, rate range)
_LOAN_TERMS: dict[tuple[str, str], tuple[float, float, float, float, float, tuple[int, ...],
                                         tuple[float, float]]] = {
    ("mortgage", "individual"): (900_000, 0.5, 300_000, 3_000_000, 10_000, (240, 300, 360),
                                 (3.05, 3.50)),
    ("consumer", "individual"): (100_000, 0.8, 30_000, 500_000, 1_000, (12, 36, 60),
                                 (2.80, 6.00)),
    ("credit_card", "individual"): (50_000, 0.7, 10_000, 200_000, 1_000, (36, 60),
                                    (18.25, 18.25)),
    ("business", "individual"): (800_000, 0.8, 200_000, 5_000_000, 10_000, (12, 24, 36),
                                 (3.00, 4.50)),
    ("business", "corporate"): (5_000_000, 1.0, 1_000_000, 50_000_000, 100_000, (12, 24, 36),
                                (3.00, 4.50)),
    ("working_capital", "corporate"): (5_000_000, 1.1, 1_000_000, 100_000_000, 100_000,
                                       (12, 24, 36), (2.80, 4.50)),
}  # fmt: skip
_COLLATERAL = {
    "mortgage": ("房产抵押",),
    "consumer": ("信用", "保证"),
    "credit_card": (None,),
    "business": ("房产抵押", "保证", "担保公司保证", "存单质押"),
    "working_capital": ("保证", "应收账款质押", "厂房抵押", "土地使用权抵押", "信用"),
}
_MEMO_REASONS = {
    "individual": ("收入稳定", "工作单位为当地事业单位", "征信记录良好，负债率较低"),
    "corporate": ("经营稳定，近三年营业收入持续增长", "资产负债率处于行业合理水平",
                  "与我行合作多年，结算往来正常"),
}  # fmt: skip
_MEMO_REPAY = ("第一还款来源充足", "抵押物足值且变现能力较强", "保证人具备代偿能力")
_RM_NOTES = {
    "individual": ("客户偏好稳健型产品，风险承受能力中等。", "客户为个体经营户，资金周转频繁。",
                   "子女在国外留学，有购汇需求。", "客户对利率敏感，曾在他行办理大额存单。",
                   "家庭资产较丰厚，可重点营销私人银行服务。"),
    "corporate": ("实际控制人另经营一家关联企业，需关注资金往来。",
                  "企业上下游集中度较高，关注应收账款回收。", "本地纳税大户，可争取代发工资业务。",
                  "企业计划扩建厂房，存在中长期融资需求。"),
}  # fmt: skip
_OPP_PRODUCTS = {
    "individual": ("大额存单", "个人住房贷款", "个人消费贷款", "稳健型理财", "增额终身寿险",
                   "信用卡分期", "基金定投", "个人养老金账户"),
    "corporate": ("流动资金贷款", "代发工资", "现金管理", "国际结算", "银行承兑汇票",
                  "供应链融资", "单位定期存款"),
}  # fmt: skip
_STAGES = ("线索", "需求确认", "方案制定", "商务谈判", "已签约", "已放弃")
_OPP_NOTES = (
    "客户{when}有一笔资金到期，有意配置{product}，需跟进利率方案。",
    "经{source}推荐，客户对{product}感兴趣，待约见面谈。",
    "客户在他行办理过{product}，比较我行定价后再决定。",
    "已提交{product}方案，客户需内部商议，预计{month}月答复。",
)
_WHEN = ("下月", "月底", "下季度", "年底")
_SOURCE = ("网点大堂经理", "老客户", "代发单位", "社区活动")
_SALES_KINDS = ("上门拜访", "电话营销", "厅堂营销", "客户沙龙", "企业微信沟通")
_RESPONSES = ("有兴趣，约下周再谈", "暂无需求", "需与家人商量", "已预约到网点办理",
              "希望提供更优惠的利率", "要求提供书面方案")  # fmt: skip
_CHANNELS = ("客服热线", "手机银行", "网点柜面", "微信银行", "智能柜台")
_SERVICE = {
    "individual": {
        "业务咨询": ("咨询大额存单起存金额及利率", "咨询手机银行转账限额调整",
                     "咨询个人养老金开户"),
        "投诉": ("投诉网点排队时间过长", "投诉理财产品风险提示不充分", "投诉信用卡年费扣收",
                 "投诉转账到账延迟"),
        "挂失": ("银行卡遗失，办理口头挂失", "存折遗失，办理正式挂失"),
        "密码重置": ("手机银行登录密码重置", "银行卡交易密码重置"),
        "信息变更": ("变更预留手机号", "更新身份证有效期", "变更通讯地址"),
        "建议": ("建议增加周末营业网点", "建议优化手机银行适老化界面"),
    },
    "corporate": {
        "业务咨询": ("咨询代发工资开通流程", "咨询对公账户年检材料", "咨询跨境人民币结算"),
        "投诉": ("投诉对公开户审核时间过长", "投诉网银证书更新失败"),
        "信息变更": ("变更法定代表人信息", "变更预留印鉴", "变更财务负责人联系方式"),
    },
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Generation


class _Identity(NamedTuple):
    customer_type: str
    id_type: str
    id_number: str
    name: str
    since: dt.datetime  # the earliest the customer can have been onboarded


class _Entity(NamedTuple):
    role: str  # regular, shared, prospect or invalid
    home: City
    cities: tuple[City, ...]
    corporate: bool
    force_loans: bool = False
    distinct_tags: bool = False


class _Copy(NamedTuple):
    customer_id: str
    phone: str
    updated_at: dt.datetime
    risk_tags: tuple[str, ...]
    has_loans: bool


def minimum_customers(n_cities: int) -> int:
    """The fewest customers `generate` accepts for that many cities."""
    # One invalid ID and one prospect per city, two shared customers, one corporate.
    return 2 * n_cities + (2 if n_cities > 1 else 0) + 1


def _allocation(n_cities: int, customers: int) -> tuple[int, int, int]:
    """How many invalid-ID, prospect and shared customers; the rest are regular."""
    minimum = minimum_customers(n_cities)
    if customers < minimum:
        raise ValueError(f"customers must be at least {minimum} for {n_cities} cities")
    invalid = n_cities
    prospects = max(n_cities, round(customers * 0.06))
    shared = 0 if n_cities == 1 else max(2, round(customers * 0.08))
    assert invalid + prospects + shared < customers
    return invalid, prospects, shared


class _Generator:
    """Appends rows to per-city tables; one instance per `generate` call."""

    def __init__(self, chosen: Sequence[City], seed: int, as_of: dt.datetime) -> None:
        self.rng = _Rng(seed)
        self.pools = _pools(seed)
        self.as_of = as_of
        self.today = as_of.date()
        self.cities = list(chosen)
        self.tables: dict[str, dict[str, list[Row]]] = {
            c.code: {t: [] for t in TABLES} for c in self.cities
        }
        self.used: set[str] = set()
        self.id_codes: dict[tuple[str, int], tuple[str, ...]] = {}
        self.rms = {
            c.code: tuple(self.person_name(self.rng.random() < 0.5) for _ in range(12))
            for c in self.cities
        }
        self.prospects: list[CustomerRef] = []
        self.invalid: list[InvalidCustomer] = []
        self.corporates: list[CustomerRef] = []
        self.shared: list[SharedCustomer] = []

    def plan(self, customers: int) -> list[_Entity]:
        rng, cs = self.rng, self.cities
        n_prospects, n_shared = _allocation(len(cs), customers)[1:]
        weights = list(itertools.accumulate(c.weight for c in cs))

        def anywhere() -> City:
            return rng.choices(cs, cum_weights=weights)[0]

        entities = [_Entity("invalid", c, (c,), corporate=False) for c in cs]
        for i in range(n_prospects):
            # The first prospects go round the cities so that every city has one.
            home = cs[i] if i < len(cs) else anywhere()
            entities.append(_Entity("prospect", home, (home,), rng.random() < 0.15))
        for i in range(n_shared):
            home = anywhere()
            others = [c for c in cs if c is not home]
            k = 2 if len(others) < 2 or rng.random() < 0.7 else 3
            entities.append(
                _Entity(
                    "shared", home, (home, *rng.sample(others, k - 1)), rng.random() < 0.2,
                    force_loans=i == 0 or rng.random() < 0.3, distinct_tags=i == 0,
                )
            )  # fmt: skip
        for i in range(customers - len(entities)):
            home = anywhere()
            entities.append(_Entity("regular", home, (home,), i == 0 or rng.random() < 0.15))
        # Shuffled so that customer numbers do not give away which rows are special.
        rng.shuffle(entities)
        return entities

    # -- identities -------------------------------------------------------------------------

    def person_name(self, male: bool) -> str:
        p = self.pools
        return self.rng.one(p.surnames) + self.rng.one(p.male if male else p.female)

    def person(self, home: City) -> _Identity:
        rng = self.rng
        year = self.as_of.year - min(85, int(rng.triangular(19, 86, 40)))
        birth = rng.day(dt.date(year, 1, 1), dt.date(year, 12, 31))
        key = (home.code, year)
        codes = self.id_codes.get(key)
        if codes is None:
            codes = self.id_codes[key] = tuple(d.code for d in id_districts(home, year))
        region = rng.one(codes)
        male = rng.random() < 0.5
        number = ""
        while not number or number in self.used:
            # The sequence number is odd for men and even for women.
            number = national_id(region, birth, rng.between(1, 499) * 2 - male)
        self.used.add(number)
        adult = dt.datetime(year + 18, birth.month, min(birth.day, 28))
        return _Identity("individual", "ric", number, self.person_name(male),
                         max(CRM_START, adult))  # fmt: skip

    def company(self, home: City) -> _Identity:
        rng, p = self.rng, self.pools
        founded = rng.day(dt.date(1995, 1, 1), self.today - dt.timedelta(days=365))
        kind = _CREDIT_KINDS.pick(rng)
        district = rng.one(home.districts)
        region = district.code if rng.random() < 0.7 else f"{home.code}00"
        number = ""
        while not number or number in self.used:
            if founded.year >= 2016:
                # Registered since the 2015 reform: a system-assigned organisation code, "MA…".
                org = "MA" + "".join(rng.choices("0123456789ABCDEFGHJKLMNPQRTUWXY", k=7))
            else:
                org = f"{rng.below(10**8):08d}" + rng.one("0123456789X")
            number = credit_code(kind, region, org)
        assert uscc.is_valid(number), number
        self.used.add(number)
        brand = rng.one(p.brands)
        if kind == "91":
            name = f"{home.short_name}{brand}{rng.one(p.suffixes)}"
        elif kind == "92":
            shop = rng.one(("副食店", "五金店", "餐馆", "服装店"))
            name = f"{home.name}{district.name}{brand}{shop}"
        else:
            crop = rng.one(("茶叶", "果蔬", "水产", "蚕桑", "花卉苗木"))
            name = f"{home.short_name}{district.name[:2]}{brand}{crop}专业合作社"
        return _Identity("corporate", "uscc", number, name,
                         max(CRM_START, _at(founded, 0) + dt.timedelta(days=30)))  # fmt: skip

    def spoil(self, valid: str, reason: str) -> str:
        """A wrong variant of a valid ID number, as data entry produces them."""
        if reason == "check_digit":
            digits = "0123456789X"
            number = valid[:-1] + digits[(digits.index(valid[-1]) + 1 + self.rng.below(10)) % 11]
        elif reason == "birth_date":
            # 30 February, with a check digit that matches it.
            body = f"{valid[:10]}0230{valid[14:17]}"
            number = body + str(ric.calc_check_digit(body + "0"))
        else:
            cut = self.rng.between(6, 16)
            number = valid[:cut] + valid[cut + 1 :]
        assert not ric.is_valid(number), number
        return number

    # -- customers --------------------------------------------------------------------------

    def entity(self, ent: _Entity) -> None:
        ident = self.company(ent.home) if ent.corporate else self.person(ent.home)
        reason = ""
        if ent.role == "invalid":
            reason = INVALID_ID_REASONS[self.cities.index(ent.home) % len(INVALID_ID_REASONS)]
            ident = ident._replace(id_number=self.spoil(ident.id_number, reason))
        copies: dict[str, _Copy] = {}
        for i, city in enumerate(ent.cities):
            # The first shared customer gets a different tag in each city, so union shows.
            tags = [_TAGS[i]] if ent.distinct_tags else None
            copy = self.customer(ent, ident, city, tags, list(copies.values()))
            copies[city.code] = copy
            ref = (city.code, copy.customer_id, ident.id_type, ident.id_number)
            if ent.role == "prospect":
                self.prospects.append(CustomerRef(*ref))
            elif ent.role == "invalid":
                self.invalid.append(InvalidCustomer(*ref, reason=reason))
            if ent.corporate:
                self.corporates.append(CustomerRef(*ref))
        if ent.role == "shared":
            self.shared.append(
                SharedCustomer(
                    id_type=ident.id_type, id_number=ident.id_number, name=ident.name,
                    customer_type=ident.customer_type, home_city=ent.home.code,
                    customer_ids={code: c.customer_id for code, c in copies.items()},
                    phones={code: c.phone for code, c in copies.items()},
                    risk_tags={code: c.risk_tags for code, c in copies.items()},
                    loan_cities=tuple(code for code, c in copies.items() if c.has_loans),
                )
            )  # fmt: skip

    def status(self, ent: _Entity) -> str:
        if ent.role in ("prospect", "invalid"):
            return "prospect" if ent.role == "prospect" else "active"
        r = self.rng.random()
        if ent.role == "shared":
            return "active" if r < 0.9 else "dormant"
        return "active" if r < 0.88 else "dormant" if r < 0.96 else "closed"

    def customer(
        self, ent: _Entity, ident: _Identity, city: City, tags: list[str] | None,
        others: list[_Copy],
    ) -> _Copy:  # fmt: skip
        rng, rows = self.rng, self.tables[city.code]
        customer_id = f"C{city.code}{len(rows['customers']) + 1:06d}"
        ctype = ident.customer_type
        status = self.status(ent)
        start = ident.since
        if status == "prospect":
            start = max(start, self.as_of - dt.timedelta(days=730))
        created = rng.moment(start, self.as_of - dt.timedelta(days=1))
        worst = n_loans = 0
        if status != "prospect":
            for _ in range(_N_DEPOSITS[ctype].pick(rng)):
                self.deposit(city, customer_id, ctype, status, created)
            n_loans = self.loan_count(ent, status)
            for _ in range(n_loans):
                worst = max(worst, self.loan(city, customer_id, ctype, created))
            for _ in range(_N_BUSINESS.pick(rng)):
                self.business(city, customer_id, ctype, created)
        self.local(city, customer_id, ctype, status, created)
        if tags is None:
            tags = self.tags(ent)
        if worst >= 1 and "watchlist" not in tags:
            tags = [*tags, "watchlist"]
        phone = self.phone()
        while any(c.phone == phone for c in others):
            phone = self.phone()
        updated = rng.moment(created, self.as_of)
        # Distinct in every city, so that the hub's latest rule has a single answer.
        while any(c.updated_at == updated for c in others):
            updated -= dt.timedelta(seconds=1)
        rows["customers"].append(
            {
                "customer_id": customer_id,
                "customer_type": ctype,
                "name": ident.name,
                "id_type": ident.id_type,
                "id_number": ident.id_number,
                "phone": phone,
                "address": self.address(city, ctype == "corporate"),
                "home_city": ent.home.code,
                "status": status,
                "risk_level": None if status == "prospect" else self.risk_level(ctype, worst),
                "risk_tags": tags,
                "credit_limit": None if status == "prospect" else self.credit_limit(ctype),
                "rm_notes": rng.one(_RM_NOTES[ctype]) if rng.random() < 0.3 else None,
                "created_at": created,
                "updated_at": updated,
            }
        )
        return _Copy(customer_id, phone, updated, tuple(tags), has_loans=n_loans > 0)

    def address(self, city: City, corporate: bool) -> str:
        rng = self.rng
        district = rng.one(city.districts).name
        street = f"{rng.one(self.pools.streets)}{rng.between(1, 999)}号"
        if corporate:
            room = f"{rng.between(1, 8)}号楼{rng.between(1, 22)}0{rng.between(1, 9)}室"
            unit = rng.one((f"{rng.between(1, 30)}楼", f"{rng.between(1, 12)}幢", room))
        else:
            floor, door = rng.between(1, 33), rng.between(1, 4)
            unit = f"{rng.between(1, 30)}幢{rng.between(1, 4)}单元{floor}0{door}室"
        return f"{PROVINCE}{city.name}{district}{street}{unit}"

    def phone(self) -> str:
        return f"{self.rng.one(self.pools.mobile_prefixes)}{self.rng.below(10**8):08d}"

    def tags(self, ent: _Entity) -> list[str]:
        if self.rng.random() >= (0.3 if ent.role == "shared" else 0.06):
            return []
        return [self.rng.one(_TAGS if ent.corporate else _TAGS[:-1])]

    def risk_level(self, ctype: str, worst: int) -> int:
        """1 (low) to 5 (high); `worst` is the index of the worst loan's five-class category."""
        level = self.rng.between(1, 3) if ctype == "individual" else self.rng.between(2, 4)
        if worst == 1:
            return level + 1
        return max(level, 4) + (worst >= 3) if worst >= 2 else level

    def credit_limit(self, ctype: str) -> Decimal:
        rng = self.rng
        if ctype == "corporate":
            return _cents(_round_to(_lognormal(rng, 10_000_000, 1.0, 1_000_000, 2e8), 100_000))
        if rng.random() < 0.3:
            return Decimal("0.00")
        return _cents(_round_to(_lognormal(rng, 150_000, 0.8, 20_000, 1_000_000), 10_000))

    def loan_count(self, ent: _Entity, status: str) -> int:
        if status == "closed":
            return 0
        n = _N_LOANS["corporate" if ent.corporate else "individual"].pick(self.rng)
        return max(n, 1) if ent.force_loans else n

    # -- children ---------------------------------------------------------------------------

    def deposit(
        self, city: City, customer_id: str, ctype: str, status: str, created: dt.datetime
    ) -> None:
        rng, rows = self.rng, self.tables[city.code]["deposit_accounts"]
        corp = ctype == "corporate"
        currency = _CURRENCIES.pick(rng)
        if currency == "CNY":
            product = _DEPOSIT_PRODUCTS[ctype].pick(rng)
        else:
            product = rng.one(("current", "fixed"))
        opened = rng.day(created.date(), self.today)
        maturity: dt.date | None = None
        if product == "current":
            yuan = _lognormal(rng, 800_000 if corp else 15_000, 1.5, 0, 2e8 if corp else 3e6)
            rate = 0.05
        elif product == "notice":
            low = 500_000 if corp else 50_000
            yuan = _lognormal(rng, low * 4, 0.8, low, low * 100)
            rate = rng.one((0.10, 0.45))  # 1-day and 7-day notice
        else:
            terms = _FIXED_RATES if product == "fixed" else _CD_RATES
            months = rng.one(tuple(terms))
            rate = terms[months] + _era_bonus(opened)
            # Term deposits renew at maturity, so the term in force ends after the as-of date.
            elapsed = (self.today.year - opened.year) * 12 + self.today.month - opened.month
            terms_run = max(1, elapsed // months)
            maturity = _add_months(opened, terms_run * months)
            if maturity <= self.today:
                maturity = _add_months(opened, (terms_run + 1) * months)
            if product == "fixed":
                yuan = _lognormal(
                    rng, 3_000_000 if corp else 80_000, 1.0, 1_000, 5e8 if corp else 5e6
                )
            else:
                # Large-denomination CDs start at 200k for people and 10M for companies.
                low = 10_000_000 if corp else 200_000
                yuan = _lognormal(rng, low * 2.5, 0.6, low, low * 25)
        if currency != "CNY":
            rate = 0.05 if product == "current" else 1.0
        state = "closed" if status == "closed" else "open"
        if state == "open" and rng.random() < 0.02:
            state = rng.one(("frozen", "closed"))
        if status == "dormant" and product == "current":
            yuan = rng.uniform(0, 200)
        balance = Decimal("0.00") if state == "closed" else _cents(yuan / _CNY_PER_UNIT[currency])
        rows.append(
            {
                "account_id": f"D{city.code}{len(rows) + 1:09d}",
                "customer_id": customer_id,
                "product": product,
                "currency": currency,
                "balance": balance,
                "interest_rate": _percent(rate),
                "opened_on": opened,
                "maturity_on": maturity,
                "status": state,
                "updated_at": rng.moment(_at(opened, 1), self.as_of),
            }
        )

    def loan(self, city: City, customer_id: str, ctype: str, created: dt.datetime) -> int:
        """Add one loan; return the index of its five-class category (0 is normal)."""
        rng, rows = self.rng, self.tables[city.code]["loans"]
        product = _LOAN_PRODUCTS[ctype].pick(rng)
        median, sigma, low, high, step, terms, (r_low, r_high) = _LOAN_TERMS[product, ctype]
        principal = _round_to(_lognormal(rng, median, sigma, low, high), step)
        months = rng.one(terms)
        five_class = _FIVE_CLASS.pick(rng)
        if five_class == "normal":
            overdue = rng.between(1, 29) if rng.random() < 0.03 else 0
        else:
            overdue = rng.between(*_OVERDUE[five_class])
        # Issued so that it still runs, unless it is overdue long enough to have matured since.
        start = created.date()
        latest = max(start, self.today - dt.timedelta(days=7 + overdue + 30 * (overdue > 0)))
        issued = rng.day(min(latest, max(start, _add_months(self.today, 1 - months))), latest)
        maturity = _add_months(issued, months)
        if product == "credit_card":
            balance = principal * rng.uniform(0.0, 0.6)
        else:
            elapsed = (self.today - issued).days / (maturity - issued).days
            balance = principal * max(0.05, 1 - elapsed * rng.uniform(0.8, 1.0))
        if five_class != "normal":
            balance = max(balance, principal * 0.3)
        memo = (f"经{city.name}分行贷审会审议同意。借款人{rng.one(_MEMO_REASONS[ctype])}，"
                f"{rng.one(_MEMO_REPAY)}。")  # fmt: skip
        rows.append(
            {
                "loan_id": f"L{city.code}{len(rows) + 1:09d}",
                "customer_id": customer_id,
                "product": product,
                "principal": _cents(principal),
                "balance": min(_cents(balance), _cents(principal)),
                "interest_rate": _percent(rng.uniform(r_low, r_high)),
                "five_class": five_class,
                "overdue_days": overdue,
                "issued_on": issued,
                "maturity_on": maturity,
                "collateral": rng.one(_COLLATERAL[product]),
                "approval_memo": None if product == "credit_card" else memo,
                "updated_at": rng.moment(_at(issued, 2), self.as_of),
            }
        )
        return FIVE_CLASSES.index(five_class)

    def business(self, city: City, customer_id: str, ctype: str, created: dt.datetime) -> None:
        rng, rows = self.rng, self.tables[city.code]["intermediary_business"]
        kind = _BUSINESS_KINDS[ctype].pick(rng)
        median, sigma, low, high, fee_low, fee_high = _BUSINESS_TERMS[kind]
        amount = _lognormal(rng, median, sigma, low, high)
        if kind in ("wealth", "insurance", "custody"):
            amount = _round_to(amount, 1_000)
        traded = rng.day(created.date(), self.today)
        rows.append(
            {
                "business_id": f"B{city.code}{len(rows) + 1:09d}",
                "customer_id": customer_id,
                "product_type": kind,
                "product_name": self.product_name(kind, ctype),
                "amount": _cents(amount),
                "fee_income": _cents(amount * rng.uniform(fee_low, fee_high)),
                "trade_date": traded,
                "updated_at": rng.moment(_at(traded, 3), self.as_of),
            }
        )

    def product_name(self, kind: str, ctype: str) -> str:
        rng = self.rng
        brand = rng.one(self.pools.brands)
        if kind == "wealth":
            days = rng.one((30, 90, 180, 365))
            return f"{rng.one(_WEALTH)}稳健{days}天持有期理财{rng.between(1, 30)}号"
        if kind == "fund":
            return f"{brand}{rng.one(_FUND_THEMES)}{rng.one('AC')}"
        if kind == "insurance" and ctype == "corporate":
            return f"{brand}财险{rng.one(('团体意外险', '雇主责任险', '财产一切险'))}"
        if kind == "insurance":
            return f"{brand}人寿{rng.one(_INSURANCE)}"
        if kind == "forex":
            deal = rng.one(("结汇", "售汇", "外币兑换", "远期结售汇"))
            return f"{deal}（{rng.one(('USD', 'USD', 'HKD', 'EUR', 'JPY'))}）"
        return rng.one(_SETTLEMENT if kind == "settlement" else _CUSTODY)

    # -- local tables -----------------------------------------------------------------------

    def local(
        self, city: City, customer_id: str, ctype: str, status: str, created: dt.datetime
    ) -> None:
        rng = self.rng
        prospect = status == "prospect"
        n = rng.between(1, 2) if prospect and rng.random() < 0.9 else int(rng.random() < 0.25)
        for _ in range(n):
            self.opportunity(city, customer_id, ctype, prospect, created)
        for _ in range(rng.between(1, 3) if prospect else rng.one((0, 0, 0, 1, 2))):
            self.sales_activity(city, customer_id, ctype, created)
        if not prospect:
            for _ in range(_N_SERVICE.pick(rng)):
                self.service_activity(city, customer_id, ctype, created)

    def opportunity(
        self, city: City, customer_id: str, ctype: str, prospect: bool, created: dt.datetime
    ) -> None:
        rng, rows = self.rng, self.tables[city.code]["opportunities"]
        product = rng.one(_OPP_PRODUCTS[ctype])
        notes = rng.one(_OPP_NOTES).format(
            when=rng.one(_WHEN), product=product, source=rng.one(_SOURCE),
            month=rng.between(1, 12),
        )  # fmt: skip
        median = 3_000_000 if ctype == "corporate" else 300_000
        rows.append(
            {
                "opportunity_id": f"O{city.code}{len(rows) + 1:08d}",
                "customer_id": customer_id,
                "product": product,
                # A prospect's opportunity is still open: nothing signed or lost yet.
                "stage": rng.one(_STAGES[:4] if prospect else _STAGES),
                "expected_amount": _cents(
                    _round_to(_lognormal(rng, median, 1.0, 10_000, 1e8), 10_000)
                ),
                "owner": rng.one(self.rms[city.code]),
                "notes": notes,
                "updated_at": rng.moment(created, self.as_of),
            }
        )

    def sales_activity(
        self, city: City, customer_id: str, ctype: str, created: dt.datetime
    ) -> None:
        rng, rows = self.rng, self.tables[city.code]["sales_activities"]
        kind = rng.one(_SALES_KINDS)
        product = rng.one(_OPP_PRODUCTS[ctype])
        rows.append(
            {
                "activity_id": f"SA{city.code}{len(rows) + 1:08d}",
                "customer_id": customer_id,
                "kind": kind,
                "happened_at": rng.moment(created, self.as_of),
                "owner": rng.one(self.rms[city.code]),
                "summary": f"{kind}：向客户介绍{product}，客户表示{rng.one(_RESPONSES)}。",
            }
        )

    def service_activity(
        self, city: City, customer_id: str, ctype: str, created: dt.datetime
    ) -> None:
        rng, rows = self.rng, self.tables[city.code]["service_activities"]
        kind = rng.one(list(_SERVICE[ctype]))
        rows.append(
            {
                "activity_id": f"SV{city.code}{len(rows) + 1:08d}",
                "customer_id": customer_id,
                "channel": rng.one(_CHANNELS),
                "kind": kind,
                "happened_at": rng.moment(created, self.as_of),
                # Complaints stay open more often than other requests.
                "resolved": rng.random() < (0.7 if kind == "投诉" else 0.95),
                "summary": rng.one(_SERVICE[ctype][kind]),
            }
        )

    # -- manifest ---------------------------------------------------------------------------

    def manifest(self, seed: int, customers: int) -> Manifest:
        counts: dict[str, CityCounts] = {}
        for c in self.cities:
            rows = self.tables[c.code]
            counts[c.code] = CityCounts(
                customers=len(rows["customers"]),
                public_customers=sum(r["status"] != "prospect" for r in rows["customers"]),
                prospects=sum(r.city_code == c.code for r in self.prospects),
                invalid_ids=sum(r.city_code == c.code for r in self.invalid),
                corporate=sum(r["customer_type"] == "corporate" for r in rows["customers"]),
                shared=sum(c.code in s.customer_ids for s in self.shared),
                rows={t: len(rows[t]) for t in TABLES},
            )
        return Manifest(
            seed=seed,
            as_of=self.as_of,
            cities=tuple(c.code for c in self.cities),
            distinct_customers=customers,
            golden_customers=customers - len(self.prospects) - len(self.invalid),
            shared=tuple(self.shared),
            prospects=tuple(self.prospects),
            invalid_ids=tuple(self.invalid),
            corporates=tuple(self.corporates),
            counts=counts,
        )


def generate(
    cities: Sequence[City], customers: int, seed: int, *, as_of: dt.datetime = AS_OF
) -> DemoData:
    """Rows of every CRM table of each city, for `customers` distinct persons and companies."""
    if not cities:
        raise ValueError("at least one city is required")
    if len({c.code for c in cities}) != len(cities):
        raise ValueError("the cities must be distinct")
    gen = _Generator(cities, seed, as_of)
    # Millions of small acyclic dicts: the cyclic collector would rescan them over and over.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for ent in gen.plan(customers):
            gen.entity(ent)
    finally:
        if was_enabled:
            gc.enable()
    return DemoData(tables=gen.tables, manifest=gen.manifest(seed, customers))


def conflicting_edits(manifest: Manifest, seed: int) -> list[Edit]:
    """Edits to make at once in two cities on shared customers, in the order to apply them."""
    if not manifest.shared:
        return []
    # random hashes a str seed with SHA-512, so this is stable across processes.
    rng = _Rng(f"{seed}:edits")
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    t = manifest.as_of + dt.timedelta(hours=1)
    minute = dt.timedelta(minutes=1)

    def pick(i: int) -> tuple[SharedCustomer, str, str]:
        s = manifest.shared[i % len(manifest.shared)]
        first, second = list(s.customer_ids)[:2]
        return s, first, second

    def edit(s: SharedCustomer, code: str, minutes: int, note: str, **changes: Any) -> Edit:
        changes["updated_at"] = t + minutes * minute
        return Edit(code, "customers", {"customer_id": s.customer_ids[code]}, changes, note)

    taken = {p for s in manifest.shared for p in s.phones.values()}

    def phone() -> str:
        number = str(fake.phone_number())
        while number in taken or number.startswith("14"):
            number = str(fake.phone_number())
        taken.add(number)
        return number

    def address(code: str) -> str:
        c = city_by_code(code)
        district = rng.one(c.districts).name
        return f"{PROVINCE}{c.name}{district}{fake.street_name()}{rng.between(1, 999)}号"

    s, a, b = pick(0)
    edits = [
        edit(s, a, 0, f"phone changed in {a}", phone=phone()),
        edit(s, b, 5, f"phone changed differently in {b}, later: {b} wins (latest)",
             phone=phone()),
    ]  # fmt: skip
    s, a, b = pick(1)
    edits += [
        edit(s, b, 10, f"address changed in {b}", address=address(b)),
        edit(s, a, 12, f"address changed in {a}, later: {a} wins (latest)", address=address(a)),
    ]
    s, a, b = pick(2)
    # Tags the generator never assigns, so that the union visibly grows by both.
    edits += [
        edit(s, a, 20, f"risk tag added in {a}",
             risk_tags=[*s.risk_tags[a], "litigation"]),
        edit(s, b, 21, f"another risk tag added in {b}: the golden record has both (union)",
             risk_tags=[*s.risk_tags[b], "fraud_alert"]),
    ]  # fmt: skip
    s, a, b = pick(3)
    flipped = "corporate" if s.customer_type == "individual" else "individual"
    edits += [
        edit(s, b, 30, f"customer_type changed in {b} only: a conflict opens (manual)",
             customer_type=flipped),
        edit(s, a, 31, f"phone changed in {a} at the same time", phone=phone()),
    ]  # fmt: skip
    return edits
