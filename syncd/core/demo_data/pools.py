"""Names, streets, company name parts and mobile prefixes drawn from Faker once per seed.

They come from Faker's zh_CN provider, drawn once into pools and then sampled with a seeded
`random.Random`, because calling Faker per row is too slow for 100k customers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from faker import Faker

_MORE_SUFFIXES = (
    "纺织有限公司", "服饰有限公司", "机械制造有限公司", "五金制品有限公司", "电器有限公司",
    "贸易有限公司", "建设工程有限公司", "食品有限公司", "新材料股份有限公司",
    "汽车零部件有限公司", "物流有限公司", "实业有限公司", "电子商务有限公司",
)  # fmt: skip


@dataclass(frozen=True)
class Pools:
    # Duplicates are kept: they carry Faker's frequencies (王 and 李 are common surnames).
    surnames: tuple[str, ...]
    male: tuple[str, ...]
    female: tuple[str, ...]
    streets: tuple[str, ...]
    brands: tuple[str, ...]
    suffixes: tuple[str, ...]
    mobile_prefixes: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def pools(seed: int) -> Pools:
    fake = Faker("zh_CN")
    fake.seed_instance(seed)
    prefixes = (str(fake.phone_number())[:3] for _ in range(200))
    brands = (str(fake.company_prefix()) for _ in range(400))
    return Pools(
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
