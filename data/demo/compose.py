"""Compose the demo corpus: our own English sentences, IOB2, split train/dev/test.

    python data/demo/compose.py        # rewrites data/demo/{train,dev,test}.txt and texts.txt

Dev and test use only held-out names (a third of the names), so their
F1 measures generalisation to unseen names, not memory. Sentences come from hand-written templates (news, business, sport, science,
travel) filled from hand-written name lists, with deliberate ambiguities:
Washington/Jordan as person and place, Ford as person and company,
nationalities and events as MISC, names that contain other names (Bank of
England is one ORG). Words are split with promptbert's own splitter, the one
the service applies to raw text, so training and serving agree.
"""

from __future__ import annotations

import random
import re
import zlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from promptbert.data import split_words  # noqa: E402

NAMES = {
    "POL": ["Angela Merkel", "Emmanuel Macron", "Kofi Annan", "Jacinda Ardern", "Elena Petrova", "Samuel Mensah",
            "Rahul Mehta", "Ingrid Berg", "Tomás Ortega", "Fatima Zahra"],
    "ATH": ["Serena Williams", "Lionel Messi", "Naomi Osaka", "Usain Bolt", "Mateo Silva", "Yuki Tanaka",
            "Amara Okafor", "Diego Fernández", "Chloé Martin", "Lars Nilsson"],
    "SCI": ["Marie Curie", "Ada Lovelace", "Grace Hopper", "Wangari Maathai", "Kenji Watanabe", "Priya Raman",
            "Li Wei", "Hannah Schmidt"],
    "PER": ["Olu Adeyemi", "Sofia Rossi", "Hannah Schmidt", "Li Wei", "Tomás Ortega", "Ingrid Berg", "Rahul Mehta",
            "Chloé Martin", "Samuel Mensah", "Fatima Zahra"],
    "INST": ["United Nations", "European Union", "World Health Organization", "Red Cross",
             "International Monetary Fund", "Federal Reserve", "African Union"],
    "CO": ["Siemens", "Toyota", "Nordic Rail", "Greenfield Capital", "Bluewave Energy", "Atlas Robotics",
           "Harbor Logistics", "Airbus", "Volta Motors", "Pioneer Bank", "Meridian Pharma", "Orbit Telecom"],
    "AIR": ["Kestrel Airlines", "Nordic Air", "Sunline Airways", "Coral Jet", "Andes Air", "Polar Wings"],
    "CLUB": ["Real Madrid", "Manchester United", "Ajax", "Boca Juniors", "Riverside FC", "Al Ahly"],
    "LAB": ["NASA", "CERN", "University of Oxford", "Kyoto University", "Pasteur Institute"],
    "MEDIA": ["Reuters", "the BBC", "Le Monde", "Al Jazeera", "Die Zeit", "El País"],
    "CITY": ["Paris", "Berlin", "Nairobi", "Tokyo", "São Paulo", "New York", "Sydney", "Cape Town", "Mumbai",
             "Lisbon", "Reykjavik", "Kyoto", "Lagos", "Toronto", "Seoul", "Madrid", "Istanbul", "Vienna",
             "Buenos Aires", "Auckland", "Oslo", "Cairo"],
    "COUNTRY": ["France", "Germany", "Kenya", "Japan", "Brazil", "Canada", "India", "Norway", "Egypt", "Mexico"],
    "REGION": ["Patagonia", "Sahara", "Bavaria", "Tasmania", "Andes", "Siberia", "Greenland"],
    "WATER": ["Lake Geneva", "Gulf of Mexico", "Rhine", "Danube", "Lake Victoria", "Baltic Sea"],
    "NAT": ["French", "German", "Japanese", "Brazilian", "Kenyan", "Italian", "Canadian", "Indian", "Nigerian",
            "Spanish", "Swedish", "Mexican", "Korean", "Egyptian", "Norwegian"],
    "EVENT": ["World Cup", "Olympics", "Tour de France", "Champions League", "Wimbledon", "Paris Marathon",
              "Africa Cup of Nations", "Ryder Cup"],
    "PRIZE": ["Nobel Prize", "Turing Award", "Fields Medal", "Pulitzer Prize", "Abel Prize", "Booker Prize"],
    "PRODUCT": ["Boeing 747", "iPhone", "Model Y", "PlayStation", "Kindle"],
}
SLOT_TYPE = {"POL": "PER", "ATH": "PER", "SCI": "PER", "PER": "PER", "INST": "ORG", "CO": "ORG", "AIR": "ORG",
             "CLUB": "ORG", "LAB": "ORG", "MEDIA": "ORG", "CITY": "LOC", "COUNTRY": "LOC", "REGION": "LOC",
             "WATER": "LOC", "NAT": "MISC", "EVENT": "MISC", "PRIZE": "MISC", "PRODUCT": "MISC"}

# [TYPE text] marks a fixed entity; {KIND} slots are filled from NAMES (KIND maps to a type in SLOT_TYPE).
TEMPLATES = {
    "news": [
        "{POL} met {POL} in {CITY} on Monday.",
        "The {INST} said on Tuesday that talks in {CITY} had stalled.",
        "{NAT} officials rejected the proposal from the {INST}.",
        "Speaking in {CITY}, {POL} called for calm.",
        "{PER}, a spokeswoman for the {INST}, declined to comment.",
        "Thousands marched through {CITY} to protest the new law.",
        "[PER Washington] told reporters in [LOC Washington] that the vote would be close.",
        "King Abdullah of [LOC Jordan] received the {NAT} delegation.",
        "[PER Michael Jordan] visited [LOC Jordan] last spring.",
        "The {NAT} prime minister flew to {CITY} after meeting {POL}.",
        "Police in {CITY} arrested two men on Friday.",
        "The {INST} warned that floods along the {WATER} could worsen.",
        "{POL} will lead the {NAT} delegation at the {INST} summit in {CITY}.",
        "Elections in {COUNTRY} were postponed by a week.",
        "According to {MEDIA}, {POL} resigned after only six months in office.",
        "It rained all week.",
        "The minister resigned.",
        "Nobody was hurt.",
        "{POL} said the {INST} and the {INST} had agreed to share data on refugees crossing from {COUNTRY} into {COUNTRY}, a deal that {NAT} diplomats had sought for more than two years.",
        "Residents of {CITY} said they had not seen such heat since their grandparents' time.",
    ],
    "business": [
        "Shares of {CO} rose 4 percent after the company raised its forecast.",
        "{CO} agreed to buy {CO} for $2.3 billion.",
        "{PER}, chief executive of {CO}, will step down in March.",
        "The [ORG Bank of England] left interest rates unchanged.",
        "[ORG Ford] recalled 40,000 cars in {COUNTRY}.",
        "[PER Henry Ford] built his first car in a small shed.",
        "{CO} opened a new factory near {CITY}.",
        "{NAT} exporters welcomed the deal with the {INST}.",
        "Analysts at {CO} expect profits to fall.",
        "{CO} will cut 1,200 jobs, {PER} said.",
        "{CO} launched its {PRODUCT} rival in {CITY} last week.",
        "Sales of the {PRODUCT} slowed in the second quarter.",
        "{PER} joined {CO} from {CO} in 2019.",
        "Investors sold {NAT} bonds on Thursday.",
        "Profits were flat.",
        "{CO} said revenue in {COUNTRY} grew 12 percent, helped by strong demand from {NAT} customers, while costs at its plant outside {CITY} rose because of higher energy prices.",
    ],
    "sport": [
        "{ATH} won the final in straight sets.",
        "{CLUB} beat {CLUB} 2-1 in {CITY}.",
        "{ATH} scored twice as {CLUB} won the {EVENT} match.",
        "The {NAT} team arrived in {CITY} for the {EVENT}.",
        "{ATH} broke the record at the {EVENT}.",
        "{CLUB} signed {ATH} on a three-year contract.",
        "{ATH} withdrew from the {EVENT} with a knee injury.",
        "Fans in {CITY} celebrated until dawn.",
        "{ATH} of {COUNTRY} finished second behind {ATH}.",
        "The {EVENT} returns to {CITY} next year.",
        "{NAT} cyclists dominated the {EVENT}.",
        "The match was abandoned.",
        "{ATH}, who grew up in {CITY}, said winning the {EVENT} with {CLUB} in front of a home crowd was the proudest moment of a career that began at a small club near {CITY}.",
    ],
    "science": [
        "Researchers at {LAB} published the study on Wednesday.",
        "{SCI} shared the {PRIZE} with {SCI}.",
        "Scientists at {LAB} near {CITY} detected a new particle.",
        "{SCI} led the team that mapped glaciers in {REGION}.",
        "The [ORG World Health Organization] warned of a measles outbreak in {COUNTRY}.",
        "{NAT} astronomers spotted the comet first.",
        "[PER Ada Lovelace] wrote the first algorithm for a machine that was never built.",
        "A probe launched by {LAB} will reach the comet in 2031.",
        "{SCI} of {LAB} said the vaccine was safe.",
        "The results surprised everyone.",
        "Working with colleagues from {LAB} and {LAB}, {SCI} spent three winters in {REGION} measuring how quickly the ice was thinning.",
    ],
    "travel": [
        "Flights from {CITY} to {CITY} were cancelled because of snow.",
        "{AIR} will add daily flights to {CITY} in June.",
        "Tourists flocked to {CITY} for the {EVENT}.",
        "Hotels in {CITY} are fully booked.",
        "{PER} spent a month hiking across {REGION}.",
        "The night train from {CITY} to {CITY} is back.",
        "{NAT} travellers need a visa for {COUNTRY}.",
        "We took the ferry across {WATER} at dawn.",
        "{AIR} ordered ten {PRODUCT} jets.",
        "The view from the hills above {CITY} is worth the climb.",
        "After landing in {CITY}, {PER} took a bus to {CITY}, then a boat along the {REGION} coast, and wrote about the trip for {MEDIA}.",
    ],
}

_MARK = re.compile(r"\[(PER|ORG|LOC|MISC) ([^\]]+)\]")


def name_split(names: list[str], held_out: bool) -> list[str]:
    """About a third of all names are held out (by a stable hash of the name, so a name listed
    under two kinds is on one side only): dev and test use only names training never saw."""
    part = [n for n in names if (zlib.crc32(n.encode()) % 3 == 0) == held_out]
    return part or names


def fill(template: str, rng: random.Random, held_out: bool = False) -> str:
    def slot(m: re.Match[str]) -> str:
        kind = m.group(1)
        name = rng.choice(name_split(NAMES[kind], held_out))
        if name.startswith("the "):  # "the BBC": the article is not part of the name
            return f"the [{SLOT_TYPE[kind]} {name[4:]}]"
        return f"[{SLOT_TYPE[kind]} {name}]"

    return re.sub(r"\{([A-Z]+)\}", slot, template)


def to_conll(marked: str) -> tuple[str, list[tuple[str, str]]]:
    """Plain text and IOB2 rows of a marked sentence."""
    text, spans, pos = "", [], 0
    for m in _MARK.finditer(marked):
        text += marked[pos : m.start()]
        spans.append((len(text), len(text) + len(m.group(2)), m.group(1)))
        text += m.group(2)
        pos = m.end()
    text += marked[pos:]
    rows = []
    for word, s, e in split_words(text):
        tag = "O"
        for a, b, t in spans:
            if a <= s and e <= b:
                tag = ("B-" if s == a else "I-") + t
            elif s < b and a < e:
                raise ValueError(f"entity boundary inside a word: {word!r} in {text!r}")
        rows.append((word, tag))
    return text, rows


def compose(n: int, seed: int, held_out: bool) -> list[tuple[str, list[tuple[str, str]]]]:
    """n sentences, every template used before any repeats, names from the train or the held-out part."""
    rng = random.Random(seed)
    pool = [t for ts in TEMPLATES.values() for t in ts]
    out, seen = [], set()
    while len(out) < n:
        template = pool[len(out) % len(pool)] if len(out) < len(pool) else rng.choice(pool)
        marked = fill(template, rng, held_out)
        if marked in seen:
            continue
        seen.add(marked)
        out.append(to_conll(marked))
    rng.shuffle(out)
    return out


def write(path: Path, items: list[tuple[str, list[tuple[str, str]]]]) -> None:
    lines = []
    for _, rows in items:
        lines.extend(f"{w} {t}" for w, t in rows)
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def main() -> None:
    train = compose(364, seed=13, held_out=False)
    rest = compose(156, seed=14, held_out=True)
    dev, test = rest[:78], rest[78:]
    items = train + rest
    write(HERE / "train.txt", train)
    write(HERE / "dev.txt", dev)
    write(HERE / "test.txt", test)
    (HERE / "texts.txt").write_text("\n".join(t for t, _ in items) + "\n", encoding="utf-8")
    print(f"train {len(train)}  dev {len(dev)}  test {len(test)}  sentences")


if __name__ == "__main__":
    main()
