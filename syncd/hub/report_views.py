"""The hub's `report_*` views: what each one selects, built from the policy for one dialect.

Each view is a SQLAlchemy Core SELECT (`Views`) compiled for the hub's dialect, so one definition
serves SQLite and PostgreSQL; `reports.install_views` creates them and the report queries read
them (customer 360 runs the child views' SELECTs against the tables themselves).

Views (all rows are *live*: source, golden and child rows whose ``_deleted`` is false):

``report_customer_link``
    golden_id, id_type, id_number, origin_node, city_code, customer_id — one row per city's
    source record of a golden customer: how (origin_node, customer_id) maps to a golden record.
``report_customer_deposit_accounts``, ``report_customer_loans``,
``report_customer_intermediary_business``
    golden_id, id_type, id_number, city_code, origin_node, then the child table's public
    columns — the child rows attributed to a golden customer (the products in `report customer`).
    Children whose parent is missing at the hub appear in no customer view.
``report_city_summary``
    node_id, city_code, customers, deposit_balance, loan_balance, loan_normal,
    loan_special_mention, loan_substandard, loan_doubtful, loan_loss, overdue_loan_balance,
    fee_income, last_applied_at, last_seen_at — one row per node (registered, or origin of any
    row). City totals count every live row of the city, orphans (children whose parent is
    missing) included. ``customers`` counts live source customer rows.
``report_customer_value_base``
    golden_id, id_type, id_number, name, cities, city_count, deposit_balance, loan_balance,
    fee_income — province-wide sums per live golden customer. Weights and tiers are config, not
    schema: `customer_value` applies them in Python on top of this view.
``report_credit_exposure``
    golden_id, id_type, id_number, name, loan_cities, loan_city_count, loan_count, loan_balance,
    multi_city, max_overdue_days, worst_five_class, overdue, non_performing — one row per golden
    customer with at least one attributed live loan. The ``--min`` threshold is applied by
    `credit_exposure`, not by the view.

``report_customer_profile``
    golden_id, id_type, id_number, name, customer_type, home_city, district, birth_date,
    created_at, risk_level, risk_tags, credit_limit, cities, city_count, deposit_count,
    deposit_balance, loan_count, loan_balance, loan_city_count, max_overdue_days, worst_class,
    fee_count, fee_income — one row per live golden customer: what the analyses
    (`syncd.hub.analysis`) classify. district: the administrative division code in the ID
    number (digits 1-6 of a ric, characters 3-8 of a uscc); birth_date: digits 7-14 of a ric
    as YYYY-MM-DD; worst_class: 0 no loan, 1 normal … 5 loss. Installed when the policy has
    `ANALYSIS_REQUIRED` too.

``cities`` and ``loan_cities`` are comma-separated node ids (sorted on PostgreSQL; in no
guaranteed order on SQLite; the report functions always return sorted lists).

Money: sums are exact NUMERIC on PostgreSQL. SQLite stores decimals as text, so its views cast
to REAL, sum and round to 2 places; the report functions return ``Decimal`` quantized to 0.01 on
both. Amounts are summed as recorded, whatever their currency.

The views need the reference CRM's tables and columns (`REQUIRED`); `missing_inputs` says
which a policy lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from syncd.core.policy import Policy
from syncd.store import hub_tables as schema_hub
from syncd.store.dialect import Dialect

CUSTOMERS = "customers"
DEPOSITS = "deposit_accounts"
LOANS = "loans"
FEES = "intermediary_business"

# The five-class loan categories (五级分类), best to worst; the index + 1 is the severity.
FIVE_CLASSES = ("normal", "special_mention", "substandard", "doubtful", "loss")
NON_PERFORMING = frozenset({"substandard", "doubtful", "loss"})

# What the reports read, per public table: (table, columns).
REQUIRED: Mapping[str, tuple[str, ...]] = {
    CUSTOMERS: ("id_type", "id_number", "name"),
    DEPOSITS: ("balance",),
    LOANS: ("balance", "five_class", "overdue_days"),
    FEES: ("fee_income",),
}

LINK_VIEW = "report_customer_link"
CITY_VIEW = "report_city_summary"
VALUE_VIEW = "report_customer_value_base"
EXPOSURE_VIEW = "report_credit_exposure"
PROFILE_VIEW = "report_customer_profile"

# What the analyses (`syncd.hub.analysis`: segments, warnings, key customers, trends) read on
# top of REQUIRED; a policy without them gets the other views and no report_customer_profile.
ANALYSIS_REQUIRED: Mapping[str, tuple[str, ...]] = {
    CUSTOMERS: (
        "customer_type",
        "home_city",
        "created_at",
        "risk_level",
        "risk_tags",
        "credit_limit",
    ),
}


def child_view_name(table: str) -> str:
    """The view of one child table's rows attributed to golden customers."""
    return f"report_customer_{table}"


def missing_inputs(policy: Policy) -> list[str]:
    """What the reports need that the policy does not declare public (empty: all there)."""
    problems: list[str] = []
    for name, columns in REQUIRED.items():
        table = policy.tables.get(name)
        if table is None or not table.is_public:
            problems.append(f"public table {name!r}")
            continue
        problems += [f"column {name}.{c}" for c in columns if c not in table.public_columns]
        if name == CUSTOMERS:
            if set(table.identity) != {"id_type", "id_number"}:
                problems.append("identity [id_type, id_number] of customers")
        elif table.parent is None or table.parent.table != CUSTOMERS:
            problems.append(f"parent customers of {name}")
    return problems


def missing_analysis_inputs(policy: Policy) -> list[str]:
    """What the analyses need beyond `missing_inputs` (empty: all there)."""
    problems = missing_inputs(policy)
    for name, columns in ANALYSIS_REQUIRED.items():
        table = policy.tables.get(name)
        if table is not None and table.is_public:
            problems += [f"column {name}.{c}" for c in columns if c not in table.public_columns]
    return problems


def live(table: sa.FromClause) -> sa.ColumnElement[bool]:
    """Rows not deleted: every view reads only these."""
    return table.c["_deleted"] == sa.false()


class Views:
    """The SELECT behind each view, for one policy and dialect."""

    def __init__(self, policy: Policy, dialect: Dialect) -> None:
        self.policy = policy
        self.dialect = dialect
        self.md = schema_hub.policy_metadata(policy)
        customers = policy.table(CUSTOMERS)
        self.identity = customers.identity
        self.golden = self.md.tables[CUSTOMERS]
        self.src = self.md.tables[schema_hub.source_table_name(customers)]
        self.nodes = schema_hub.nodes
        self.children = tuple(
            t.name
            for t in policy.public_tables
            if t.parent is not None and t.parent.table == CUSTOMERS
        )

    def definitions(self) -> dict[str, sa.Select[Any]]:
        defs: dict[str, sa.Select[Any]] = {LINK_VIEW: self.link()}
        for child in self.children:
            defs[child_view_name(child)] = self.customer_children(child)
        defs[CITY_VIEW] = self.city_summary()
        defs[VALUE_VIEW] = self.value_base()
        defs[EXPOSURE_VIEW] = self.exposure()
        if not missing_analysis_inputs(self.policy):
            defs[PROFILE_VIEW] = self.profile()
        return defs

    def zero(self, expr: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.coalesce(expr, 0, type_=expr.type)

    def link(self) -> sa.Select[Any]:
        src, golden, nodes = self.src, self.golden, self.nodes
        customers = self.policy.table(CUSTOMERS)
        on = sa.and_(*(src.c[k] == golden.c[k] for k in self.identity))
        return (
            sa.select(
                golden.c[schema_hub.GOLDEN_ID],
                *(golden.c[k] for k in self.identity),
                src.c[schema_hub.ORIGIN],
                nodes.c.city_code,
                *(src.c[k] for k in customers.primary_key),
            )
            .select_from(
                src.join(golden, on).outerjoin(nodes, nodes.c.node_id == src.c[schema_hub.ORIGIN])
            )
            .where(live(src), live(golden))
        )

    def attributed(self, child: str) -> tuple[sa.Table, sa.Subquery, sa.ColumnElement[bool]]:
        """The child table, the link subquery, and the join condition between them."""
        table = self.md.tables[child]
        parent = self.policy.table(child).parent
        assert parent is not None
        link = self.link().subquery(f"link_{child}")
        on = sa.and_(
            table.c[schema_hub.ORIGIN] == link.c[schema_hub.ORIGIN],
            *(table.c[c] == link.c[p] for c, p in parent.columns.items()),
        )
        return table, link, on

    def customer_children(self, child: str) -> sa.Select[Any]:
        table, link, on = self.attributed(child)
        head = [link.c[schema_hub.GOLDEN_ID], *(link.c[k] for k in self.identity)]
        head.append(link.c.city_code)
        taken = {c.key for c in head}
        own = [table.c[schema_hub.ORIGIN]] + [
            table.c[c] for c in self.policy.table(child).public_columns if c not in taken
        ]
        return sa.select(*head, *own).select_from(table.join(link, on)).where(live(table))

    def city_summary(self) -> sa.Select[Any]:
        nodes, src = self.nodes, self.src
        deposits, loans, fees = (self.md.tables[n] for n in (DEPOSITS, LOANS, FEES))
        origin = schema_hub.ORIGIN
        every = sa.union(
            sa.select(nodes.c.node_id.label("node_id")),
            *(sa.select(t.c[origin].label("node_id")) for t in (src, deposits, loans, fees)),
        ).subquery("every_node")
        cust = (
            sa.select(src.c[origin], sa.func.count().label("customers"))
            .where(live(src))
            .group_by(src.c[origin])
            .subquery("cust")
        )
        dep = (
            sa.select(
                deposits.c[origin], self.dialect.money_sum(deposits.c.balance).label("balance")
            )
            .where(live(deposits))
            .group_by(deposits.c[origin])
            .subquery("dep")
        )
        loan_cols = [self.dialect.money_sum(loans.c.balance).label("balance")]
        loan_cols += [
            self.dialect.money_sum(sa.case((loans.c.five_class == fc, loans.c.balance))).label(fc)
            for fc in FIVE_CLASSES
        ]
        loan_cols.append(
            self.dialect.money_sum(sa.case((loans.c.overdue_days > 0, loans.c.balance))).label(
                "overdue"
            )
        )
        loan = (
            sa.select(loans.c[origin], *loan_cols)
            .where(live(loans))
            .group_by(loans.c[origin])
            .subquery("loan")
        )
        fee = (
            sa.select(fees.c[origin], self.dialect.money_sum(fees.c.fee_income).label("fee_income"))
            .where(live(fees))
            .group_by(fees.c[origin])
            .subquery("fee")
        )
        return sa.select(
            every.c.node_id,
            nodes.c.city_code,
            self.zero(cust.c.customers).label("customers"),
            self.zero(dep.c.balance).label("deposit_balance"),
            self.zero(loan.c.balance).label("loan_balance"),
            *(self.zero(loan.c[fc]).label(f"loan_{fc}") for fc in FIVE_CLASSES),
            self.zero(loan.c.overdue).label("overdue_loan_balance"),
            self.zero(fee.c.fee_income).label("fee_income"),
            nodes.c.applied_at.label("last_applied_at"),
            nodes.c.last_seen_at,
        ).select_from(
            every.outerjoin(nodes, nodes.c.node_id == every.c.node_id)
            .outerjoin(cust, cust.c[origin] == every.c.node_id)
            .outerjoin(dep, dep.c[origin] == every.c.node_id)
            .outerjoin(loan, loan.c[origin] == every.c.node_id)
            .outerjoin(fee, fee.c[origin] == every.c.node_id)
        )

    def per_customer_sum(self, child: str, column: str) -> sa.Subquery:
        table, link, on = self.attributed(child)
        gid = link.c[schema_hub.GOLDEN_ID]
        return (
            sa.select(gid, self.dialect.money_sum(table.c[column]).label("total"))
            .select_from(table.join(link, on))
            .where(live(table))
            .group_by(gid)
            .subquery(f"sum_{child}")
        )

    def value_base(self) -> sa.Select[Any]:
        golden = self.golden
        gid = golden.c[schema_hub.GOLDEN_ID]
        link = self.link().subquery("link")
        pairs = (
            sa.select(link.c[schema_hub.GOLDEN_ID], link.c[schema_hub.ORIGIN])
            .distinct()
            .subquery("customer_city")
        )
        cities = (
            sa.select(
                pairs.c[schema_hub.GOLDEN_ID],
                self.dialect.joined_names(pairs.c[schema_hub.ORIGIN]).label("cities"),
                sa.func.count().label("city_count"),
            )
            .group_by(pairs.c[schema_hub.GOLDEN_ID])
            .subquery("cities")
        )
        dep = self.per_customer_sum(DEPOSITS, "balance")
        loan = self.per_customer_sum(LOANS, "balance")
        fee = self.per_customer_sum(FEES, "fee_income")
        return (
            sa.select(
                gid,
                *(golden.c[k] for k in self.identity),
                golden.c.name,
                cities.c.cities,
                self.zero(cities.c.city_count).label("city_count"),
                self.zero(dep.c.total).label("deposit_balance"),
                self.zero(loan.c.total).label("loan_balance"),
                self.zero(fee.c.total).label("fee_income"),
            )
            .select_from(
                golden.outerjoin(cities, cities.c[schema_hub.GOLDEN_ID] == gid)
                .outerjoin(dep, dep.c[schema_hub.GOLDEN_ID] == gid)
                .outerjoin(loan, loan.c[schema_hub.GOLDEN_ID] == gid)
                .outerjoin(fee, fee.c[schema_hub.GOLDEN_ID] == gid)
            )
            .where(live(golden))
        )

    def exposure(self) -> sa.Select[Any]:
        golden = self.golden
        loans, link, on = self.attributed(LOANS)
        lgid = link.c[schema_hub.GOLDEN_ID]
        severity = sa.case(
            *((loans.c.five_class == fc, i + 1) for i, fc in enumerate(FIVE_CLASSES)), else_=0
        )
        per = (
            sa.select(
                lgid,
                sa.func.count(sa.distinct(loans.c[schema_hub.ORIGIN])).label("loan_city_count"),
                sa.func.count().label("loan_count"),
                self.dialect.money_sum(loans.c.balance).label("loan_balance"),
                sa.func.max(loans.c.overdue_days).label("max_overdue_days"),
                sa.func.max(severity).label("severity"),
            )
            .select_from(loans.join(link, on))
            .where(live(loans))
            .group_by(lgid)
            .subquery("per_customer")
        )
        pairs = (
            sa.select(lgid, loans.c[schema_hub.ORIGIN])
            .select_from(loans.join(link, on))
            .where(live(loans))
            .distinct()
            .subquery("loan_city")
        )
        cities = (
            sa.select(
                pairs.c[schema_hub.GOLDEN_ID],
                self.dialect.joined_names(pairs.c[schema_hub.ORIGIN]).label("loan_cities"),
            )
            .group_by(pairs.c[schema_hub.GOLDEN_ID])
            .subquery("loan_cities")
        )
        gid = golden.c[schema_hub.GOLDEN_ID]
        worst = sa.case(*((per.c.severity == i + 1, fc) for i, fc in enumerate(FIVE_CLASSES)))
        return (
            sa.select(
                gid,
                *(golden.c[k] for k in self.identity),
                golden.c.name,
                cities.c.loan_cities,
                per.c.loan_city_count,
                per.c.loan_count,
                per.c.loan_balance,
                (per.c.loan_city_count >= 2).label("multi_city"),
                per.c.max_overdue_days,
                worst.label("worst_five_class"),
                (per.c.max_overdue_days > 0).label("overdue"),
                (per.c.severity >= FIVE_CLASSES.index("substandard") + 1).label("non_performing"),
            )
            .select_from(
                golden.join(per, per.c[schema_hub.GOLDEN_ID] == gid).outerjoin(
                    cities, cities.c[schema_hub.GOLDEN_ID] == gid
                )
            )
            .where(live(golden))
        )

    def district(self) -> sa.ColumnElement[Any]:
        """The administrative division code (行政区划代码) in the ID number: digits 1-6 of an
        18-digit ric (居民身份证), characters 3-8 of a uscc (统一社会信用代码); else NULL."""
        number = self.golden.c.id_number
        id_type = self.golden.c.id_type
        return sa.case(
            (
                sa.and_(id_type == "ric", sa.func.length(number) == 18),
                sa.func.substr(number, 1, 6),
            ),
            (
                sa.and_(id_type == "uscc", sa.func.length(number) == 18),
                sa.func.substr(number, 3, 6),
            ),
            else_=sa.null(),
        )

    def birth_date(self) -> sa.ColumnElement[Any]:
        """YYYY-MM-DD from an 18-digit ric's digits 7-14 (as written: not checked as a date)."""
        number = self.golden.c.id_number
        text = (
            sa.func.substr(number, 7, 4, type_=sa.String())
            + "-"
            + sa.func.substr(number, 11, 2, type_=sa.String())
            + "-"
            + sa.func.substr(number, 13, 2, type_=sa.String())
        )
        ric = sa.and_(self.golden.c.id_type == "ric", sa.func.length(number) == 18)
        return sa.case((ric, text), else_=sa.null())

    def _child_totals(
        self, child: str, column: str, only: sa.Subquery | None = None
    ) -> sa.Subquery:
        """Per city customer row (origin, parent key): how many live rows of the child, the
        sum of column; for loans also the most overdue days and the worst five-class. `only`:
        just the rows of these city customer rows (origin and primary key columns)."""
        table = self.md.tables[child]
        parent = self.policy.table(child).parent
        assert parent is not None
        keys = [table.c[schema_hub.ORIGIN], *(table.c[c] for c in parent.columns)]
        mine: list[sa.ColumnElement[bool]] = []
        if only is not None:
            mine.append(
                sa.exists().where(
                    only.c[schema_hub.ORIGIN] == table.c[schema_hub.ORIGIN],
                    *(only.c[p] == table.c[c] for c, p in parent.columns.items()),
                )
            )
        cols: list[sa.ColumnElement[Any]] = [
            *keys,
            sa.func.count().label("n"),
            self.dialect.money_sum(table.c[column]).label("total"),
        ]
        if child == LOANS:
            severity = sa.case(
                *((table.c.five_class == fc, i + 1) for i, fc in enumerate(FIVE_CLASSES)),
                else_=0,
            )
            cols += [
                sa.func.max(table.c.overdue_days).label("max_overdue_days"),
                sa.func.max(severity).label("worst_class"),
            ]
        return (
            sa.select(*cols).where(live(table), *mine).group_by(*keys).subquery(f"totals_{child}")
        )

    def profile(self, only: Any = None) -> sa.Select[Any]:
        """One row per live golden customer: who they are, where, what they hold, how risky.

        Children are summed per city customer row first, then per (customer, city), then per
        customer: the source-to-golden join is made once, whatever the number of child tables.
        `only` (a golden id): that customer's row alone, reading only its own rows (the
        Customer 360); the view is the SELECT without it.
        """
        golden, src = self.golden, self.src
        gid = golden.c[schema_hub.GOLDEN_ID]
        origin = schema_hub.ORIGIN
        link = (
            sa.select(
                gid,
                src.c[origin],
                *(src.c[k] for k in self.policy.table(CUSTOMERS).primary_key),
            )
            .select_from(
                src.join(golden, sa.and_(*(src.c[k] == golden.c[k] for k in self.identity)))
            )
            .where(live(src), live(golden), *([] if only is None else [gid == only]))
            .subquery("profile_link")
        )
        joined: sa.FromClause = link
        totals: dict[str, sa.Subquery] = {}
        for child, column in ((DEPOSITS, "balance"), (LOANS, "balance"), (FEES, "fee_income")):
            sub = self._child_totals(child, column, None if only is None else link)
            parent = self.policy.table(child).parent
            assert parent is not None
            on = sa.and_(
                sub.c[origin] == link.c[origin],
                *(sub.c[c] == link.c[p] for c, p in parent.columns.items()),
            )
            joined = joined.outerjoin(sub, on)
            totals[child] = sub
        money = self.dialect.money_sum
        dep, loan, fee = totals[DEPOSITS], totals[LOANS], totals[FEES]
        per_city = (
            sa.select(
                link.c[schema_hub.GOLDEN_ID].label("gid"),
                link.c[origin].label("origin"),
                sa.func.sum(dep.c.n).label("dep_n"),
                money(dep.c.total).label("dep_total"),
                sa.func.sum(loan.c.n).label("loan_n"),
                money(loan.c.total).label("loan_total"),
                sa.func.max(loan.c.max_overdue_days).label("max_overdue_days"),
                sa.func.max(loan.c.worst_class).label("worst_class"),
                sa.func.sum(fee.c.n).label("fee_n"),
                money(fee.c.total).label("fee_total"),
            )
            .select_from(joined)
            .group_by(link.c[schema_hub.GOLDEN_ID], link.c[origin])
            .subquery("profile_city")
        )
        pc = per_city.c
        per = (
            sa.select(
                pc.gid,
                self.dialect.joined_names(pc.origin).label("cities"),
                sa.func.count().label("city_count"),
                sa.func.sum(pc.dep_n).label("deposit_count"),
                money(pc.dep_total).label("deposit_balance"),
                sa.func.sum(pc.loan_n).label("loan_count"),
                money(pc.loan_total).label("loan_balance"),
                sa.func.count(pc.loan_n).label("loan_city_count"),
                sa.func.max(pc.max_overdue_days).label("max_overdue_days"),
                sa.func.max(pc.worst_class).label("worst_class"),
                sa.func.sum(pc.fee_n).label("fee_count"),
                money(pc.fee_total).label("fee_income"),
            )
            .group_by(pc.gid)
            .subquery("profile_customer")
        )
        return (
            sa.select(
                gid,
                *(golden.c[k] for k in self.identity),
                golden.c.name,
                golden.c.customer_type,
                golden.c.home_city,
                self.district().label("district"),
                self.birth_date().label("birth_date"),
                golden.c.created_at,
                golden.c.risk_level,
                golden.c.risk_tags,
                golden.c.credit_limit,
                per.c.cities,
                self.zero(per.c.city_count).label("city_count"),
                *(
                    self.zero(per.c[k]).label(k)
                    for k in (
                        "deposit_count",
                        "deposit_balance",
                        "loan_count",
                        "loan_balance",
                        "loan_city_count",
                        "max_overdue_days",
                        "worst_class",
                        "fee_count",
                        "fee_income",
                    )
                ),
            )
            .select_from(golden.outerjoin(per, per.c.gid == gid))
            .where(live(golden), *([] if only is None else [gid == only]))
        )
