"""Customers: who they are (identity numbers, names) and their row in each city's CRM."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Final, NamedTuple

from stdnum.cn import ric, uscc

from syncd.core.demo_data.accounts import Accounts
from syncd.core.demo_data.activities import Activities
from syncd.core.demo_data.draws import at, cents, lognormal, round_to, weighted
from syncd.core.demo_data.manifest import (
    INVALID_ID_REASONS,
    CustomerRef,
    InvalidCustomer,
    SharedCustomer,
)
from syncd.core.demo_data.regions import PROVINCE, City, credit_code, id_districts, national_id

# The bank's CRM went live then: no customer row is older.
CRM_START: Final = dt.datetime(2008, 1, 1)

# guarantee_chain (担保圈) only applies to companies, hence last.
_TAGS = ("high_leverage", "watchlist", "related_party", "aml_review", "guarantee_chain")
_CREDIT_KINDS = weighted(("91", 0.9), ("92", 0.06), ("93", 0.04))
# How many rows of each kind a customer has, by customer type.
_N_DEPOSITS = {
    "individual": weighted((1, 0.5), (2, 0.35), (3, 0.15)),
    "corporate": weighted((1, 0.3), (2, 0.4), (3, 0.3)),
}
_N_LOANS = {
    "individual": weighted((0, 0.55), (1, 0.35), (2, 0.10)),
    "corporate": weighted((0, 0.3), (1, 0.45), (2, 0.25)),
}
_N_BUSINESS = weighted((0, 0.35), (1, 0.35), (2, 0.2), (3, 0.1))
_RM_NOTES = {
    "individual": ("客户偏好稳健型产品，风险承受能力中等。", "客户为个体经营户，资金周转频繁。",
                   "子女在国外留学，有购汇需求。", "客户对利率敏感，曾在他行办理大额存单。",
                   "家庭资产较丰厚，可重点营销私人银行服务。"),
    "corporate": ("实际控制人另经营一家关联企业，需关注资金往来。",
                  "企业上下游集中度较高，关注应收账款回收。", "本地纳税大户，可争取代发工资业务。",
                  "企业计划扩建厂房，存在中长期融资需求。"),
}  # fmt: skip


class _Identity(NamedTuple):
    customer_type: str
    id_type: str
    id_number: str
    name: str
    since: dt.datetime  # the earliest the customer can have been onboarded


class Entity(NamedTuple):
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


class Customers(Accounts, Activities):
    """Appends customers, with their accounts and activities, and records the special ones."""

    def __init__(self, chosen: Sequence[City], seed: int, as_of: dt.datetime) -> None:
        super().__init__(chosen, seed, as_of)
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
                         max(CRM_START, at(founded, 0) + dt.timedelta(days=30)))  # fmt: skip

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

    def entity(self, ent: Entity) -> None:
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

    def status(self, ent: Entity) -> str:
        if ent.role in ("prospect", "invalid"):
            return "prospect" if ent.role == "prospect" else "active"
        r = self.rng.random()
        if ent.role == "shared":
            return "active" if r < 0.9 else "dormant"
        return "active" if r < 0.88 else "dormant" if r < 0.96 else "closed"

    def customer(
        self, ent: Entity, ident: _Identity, city: City, tags: list[str] | None,
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

    def tags(self, ent: Entity) -> list[str]:
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
            return cents(round_to(lognormal(rng, 10_000_000, 1.0, 1_000_000, 2e8), 100_000))
        if rng.random() < 0.3:
            return Decimal("0.00")
        return cents(round_to(lognormal(rng, 150_000, 0.8, 20_000, 1_000_000), 10_000))

    def loan_count(self, ent: Entity, status: str) -> int:
        if status == "closed":
            return 0
        n = _N_LOANS["corporate" if ent.corporate else "individual"].pick(self.rng)
        return max(n, 1) if ent.force_loans else n
