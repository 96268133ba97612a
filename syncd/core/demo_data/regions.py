"""Zhejiang's cities and county-level divisions, and identity numbers built from their codes.

Identity numbers are built from real administrative division codes; python-stdnum computes every
check digit (Faker's `ssn()` uses codes stdnum does not know).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Final

from stdnum.cn import ric, uscc

PROVINCE: Final = "浙江省"


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
