"""Rows of the city-local tables: opportunities, sales activities and service activities."""

from __future__ import annotations

import datetime as dt

from syncd.core.demo_data.builder import Builder
from syncd.core.demo_data.draws import cents, lognormal, round_to, weighted
from syncd.core.demo_data.regions import City

_N_SERVICE = weighted((0, 0.8), (1, 0.15), (2, 0.05))
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


class Activities(Builder):
    """Appends a customer's opportunities and sales and service activities."""

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
                "expected_amount": cents(
                    round_to(lognormal(rng, median, 1.0, 10_000, 1e8), 10_000)
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
