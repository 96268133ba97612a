"""Rows of the public child tables: deposit accounts, loans and intermediary business."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Final

from syncd.core.demo_data.builder import Builder
from syncd.core.demo_data.draws import add_months, at, cents, lognormal, percent, round_to, weighted
from syncd.core.demo_data.regions import City

FIVE_CLASSES: Final = ("normal", "special_mention", "substandard", "doubtful", "loss")
_FIVE_CLASS = weighted(*zip(FIVE_CLASSES, (0.90, 0.055, 0.022, 0.013, 0.01), strict=True))
_OVERDUE = {"special_mention": (1, 90), "substandard": (91, 180), "doubtful": (181, 360),
            "loss": (361, 1080)}  # fmt: skip
_CURRENCIES = weighted(("CNY", 0.94), ("USD", 0.04), ("HKD", 0.01), ("EUR", 0.007), ("JPY", 0.003))
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
    "individual": weighted(("wealth", 0.4), ("fund", 0.25), ("insurance", 0.2), ("forex", 0.1),
                            ("settlement", 0.05)),
    "corporate": weighted(("settlement", 0.35), ("wealth", 0.2), ("forex", 0.15),
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
    "individual": weighted(("mortgage", 0.35), ("consumer", 0.3), ("credit_card", 0.25),
                            ("business", 0.10)),
    "corporate": weighted(("working_capital", 0.6), ("business", 0.4)),
}  # fmt: skip
_DEPOSIT_PRODUCTS = {
    "individual": weighted(("current", 0.5), ("fixed", 0.35), ("notice", 0.05),
                            ("large_cd", 0.10)),
    "corporate": weighted(("current", 0.55), ("fixed", 0.2), ("notice", 0.15),
                           ("large_cd", 0.10)),
}  # fmt: skip
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


class Accounts(Builder):
    """Appends deposit accounts, loans and intermediary business of a customer."""

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
            yuan = lognormal(rng, 800_000 if corp else 15_000, 1.5, 0, 2e8 if corp else 3e6)
            rate = 0.05
        elif product == "notice":
            low = 500_000 if corp else 50_000
            yuan = lognormal(rng, low * 4, 0.8, low, low * 100)
            rate = rng.one((0.10, 0.45))  # 1-day and 7-day notice
        else:
            terms = _FIXED_RATES if product == "fixed" else _CD_RATES
            months = rng.one(tuple(terms))
            rate = terms[months] + _era_bonus(opened)
            # Term deposits renew at maturity, so the term in force ends after the as-of date.
            elapsed = (self.today.year - opened.year) * 12 + self.today.month - opened.month
            terms_run = max(1, elapsed // months)
            maturity = add_months(opened, terms_run * months)
            if maturity <= self.today:
                maturity = add_months(opened, (terms_run + 1) * months)
            if product == "fixed":
                yuan = lognormal(
                    rng, 3_000_000 if corp else 80_000, 1.0, 1_000, 5e8 if corp else 5e6
                )
            else:
                # Large-denomination CDs start at 200k for people and 10M for companies.
                low = 10_000_000 if corp else 200_000
                yuan = lognormal(rng, low * 2.5, 0.6, low, low * 25)
        if currency != "CNY":
            rate = 0.05 if product == "current" else 1.0
        state = "closed" if status == "closed" else "open"
        if state == "open" and rng.random() < 0.02:
            state = rng.one(("frozen", "closed"))
        if status == "dormant" and product == "current":
            yuan = rng.uniform(0, 200)
        balance = Decimal("0.00") if state == "closed" else cents(yuan / _CNY_PER_UNIT[currency])
        rows.append(
            {
                "account_id": f"D{city.code}{len(rows) + 1:09d}",
                "customer_id": customer_id,
                "product": product,
                "currency": currency,
                "balance": balance,
                "interest_rate": percent(rate),
                "opened_on": opened,
                "maturity_on": maturity,
                "status": state,
                "updated_at": rng.moment(at(opened, 1), self.as_of),
            }
        )

    def loan(self, city: City, customer_id: str, ctype: str, created: dt.datetime) -> int:
        """Add one loan; return the index of its five-class category (0 is normal)."""
        rng, rows = self.rng, self.tables[city.code]["loans"]
        product = _LOAN_PRODUCTS[ctype].pick(rng)
        median, sigma, low, high, step, terms, (r_low, r_high) = _LOAN_TERMS[product, ctype]
        principal = round_to(lognormal(rng, median, sigma, low, high), step)
        months = rng.one(terms)
        five_class = _FIVE_CLASS.pick(rng)
        if five_class == "normal":
            overdue = rng.between(1, 29) if rng.random() < 0.03 else 0
        else:
            overdue = rng.between(*_OVERDUE[five_class])
        # Issued so that it still runs, unless it is overdue long enough to have matured since.
        start = created.date()
        latest = max(start, self.today - dt.timedelta(days=7 + overdue + 30 * (overdue > 0)))
        issued = rng.day(min(latest, max(start, add_months(self.today, 1 - months))), latest)
        maturity = add_months(issued, months)
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
                "principal": cents(principal),
                "balance": min(cents(balance), cents(principal)),
                "interest_rate": percent(rng.uniform(r_low, r_high)),
                "five_class": five_class,
                "overdue_days": overdue,
                "issued_on": issued,
                "maturity_on": maturity,
                "collateral": rng.one(_COLLATERAL[product]),
                "approval_memo": None if product == "credit_card" else memo,
                "updated_at": rng.moment(at(issued, 2), self.as_of),
            }
        )
        return FIVE_CLASSES.index(five_class)

    def business(self, city: City, customer_id: str, ctype: str, created: dt.datetime) -> None:
        rng, rows = self.rng, self.tables[city.code]["intermediary_business"]
        kind = _BUSINESS_KINDS[ctype].pick(rng)
        median, sigma, low, high, fee_low, fee_high = _BUSINESS_TERMS[kind]
        amount = lognormal(rng, median, sigma, low, high)
        if kind in ("wealth", "insurance", "custody"):
            amount = round_to(amount, 1_000)
        traded = rng.day(created.date(), self.today)
        rows.append(
            {
                "business_id": f"B{city.code}{len(rows) + 1:09d}",
                "customer_id": customer_id,
                "product_type": kind,
                "product_name": self.product_name(kind, ctype),
                "amount": cents(amount),
                "fee_income": cents(amount * rng.uniform(fee_low, fee_high)),
                "trade_date": traded,
                "updated_at": rng.moment(at(traded, 3), self.as_of),
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
