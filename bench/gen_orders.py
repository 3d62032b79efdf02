#!/usr/bin/env python3
"""Deterministic generator of realistic followupd orders (CSV, canonical header).

    python3 bench/gen_orders.py -n 1000000 -o orders.csv            # ~200 bytes a row
    python3 bench/gen_orders.py -n 20000 --due-now --pad-product 130 -o due.csv
    python3 bench/gen_orders.py -n 10000 --shipped-at 2099-01-01T00:00:00Z -o idle.csv

The same arguments (and --seed) always give byte-identical output. Only the
Python standard library is used.

Modes
  default        a realistic mix: shipped or delivered in the last three weeks
                 (relative times like -3d, which the importer resolves against
                 the import moment), some pending, returned, refunded,
                 cancelled, complaints and opt-outs; about 200 bytes a row.
  --due-now      every order shipped an hour ago ("-1h"), status shipped, no
                 complaint or opt-out: each has its shipment stage due now.
  --shipped-at V every order shipped at V (any value the importer accepts,
                 e.g. an RFC 3339 instant far in the future), status shipped.

Padding
  --pad-product C  makes every product name C characters long by appending a
                 product description (materials, sizes, care notes) made only
                 of words that pass the default lint. The name appears in the
                 subject, twice in the text body and once in the HTML body of
                 the shipment message (each padded character adds ~3 bytes),
                 so C=130 gives ~3 KB rendered messages on average with the
                 starter templates (English ~2.7 KB, German/French ~3.3 KB,
                 Japanese ~7.5 KB: quoted-printable UTF-8).
  --extra-bytes B  adds an extra column `gift_message` of B characters (it
                 reaches templates as order.extra.gift_message; the starter
                 templates do not print it, so it grows the stored row only).
"""

import argparse
import csv
import io
import random
import sys

HEADER = [
    "order_id", "marketplace", "buyer_email", "buyer_name", "product_name",
    "locale", "time_zone", "shipped_at", "delivered_at", "status", "complaint",
    "opted_out", "order_url", "tracking_url", "review_url",
]

FIRST = [
    "Ann", "Oliver", "María", "José", "Mei", "Jake", "Sofia", "Liam", "Noah",
    "Emma", "Olivia", "Ava", "Lucas", "Mateo", "Chloé", "Léa", "Hugo", "Lena",
    "Jonas", "Mia", "Søren", "Ingrid", "Łukasz", "Zofia", "Aarav", "Priya",
    "Hiroshi", "Yuki", "Chen", "Wei", "Fatima", "Omar", "Amara", "Kwame",
    "Isabella", "Ethan", "Harper", "Zoë", "Renée", "Björn", "Siobhán", "Niamh",
    "Diego", "Valentina", "Camila", "Thiago", "Ana", "João", "Elif", "Mehmet",
    "Sara", "David", "Grace", "Henry", "Ruby", "Arthur", "Freya", "Oscar",
]
LAST = [
    "Lee", "Hughes", "López", "García", "Tan", "Miller", "Rossi", "Smith",
    "Johnson", "Williams", "Brown", "Jones", "Davis", "Martin", "Bernard",
    "Dubois", "Müller", "Schmidt", "Schneider", "Fischer", "Nielsen", "Hansen",
    "Kowalski", "Nowak", "Sharma", "Patel", "Tanaka", "Suzuki", "Wang", "Li",
    "Zhang", "Haddad", "Mensah", "Okafor", "O'Brien", "Murphy", "Kelly",
    "Silva", "Santos", "Pereira", "Yılmaz", "Kaya", "Andersson", "Johansson",
    "Novak", "Horvat", "Wilson", "Taylor", "Clarke", "Walker", "Wright",
]
ASCII = str.maketrans({
    "á": "a", "é": "e", "í": "i", "ó": "o", "ú": "u", "ñ": "n", "ç": "c",
    "ø": "o", "ł": "l", "Ł": "l", "ö": "o", "ü": "u", "ë": "e", "è": "e",
    "ã": "a", "ı": "i", "'": "", " ": "",
})
DOMAINS = [
    "example.com", "example.net", "example.org", "mail.example",
    "post.example", "inbox.example", "example.co.uk", "example.de",
]
ADJ = [
    "Oak", "Walnut", "Linen", "Ceramic", "Stoneware", "Copper", "Brass",
    "Bamboo", "Wool", "Cotton", "Leather", "Glass", "Marble", "Cast Iron",
    "Enamel", "Rattan", "Teak", "Felt", "Cork", "Porcelain", "Slate", "Hemp",
]
ITEM = [
    "Desk Lamp", "Pour-Over Set", "Tea Towels (set of 3)", "Serving Board",
    "Mug", "Throw Blanket", "Cushion Cover", "Planter", "Salad Bowl",
    "Wall Clock", "Candle Holder", "Bread Bin", "Spice Rack", "Coasters (4)",
    "Table Runner", "Storage Basket", "Doormat", "Watering Can", "Vase",
    "Knife Block", "Laundry Hamper", "Bath Mat", "Pillowcases (pair)",
    "Teapot", "Cutlery Set", "Mirror", "Bookends", "Jewellery Dish",
]
COLOUR = [
    "Natural", "Charcoal", "Sage", "Terracotta", "Ivory", "Navy", "Ochre",
    "Forest Green", "Dusty Pink", "Sand", "Slate Grey", "Mustard",
]
# Filler for --pad-product: every word passes the default lint
# (review*, update*, updating, change*, changing, modif*).
PAD_WORDS = (
    "handmade in small batches from responsibly sourced materials, finished "
    "by hand with a natural oil, food safe, dishwasher safe on a gentle cycle, "
    "microwave safe, measures about 30 by 20 by 12 cm, weighs 1.2 kg, comes "
    "gift boxed with a care card, colours vary slightly from piece to piece, "
    "wipe clean with a damp cloth, keep away from direct heat, designed in "
    "our studio, made to last for years of daily use, pairs well with the "
    "rest of the collection, packed in recycled paper without plastic."
).split()
ZONES = [
    "America/Los_Angeles", "America/Denver", "America/Chicago",
    "America/New_York", "America/Toronto", "America/Sao_Paulo",
    "America/Mexico_City", "Europe/London", "Europe/Dublin", "Europe/Paris",
    "Europe/Berlin", "Europe/Madrid", "Europe/Rome", "Europe/Warsaw",
    "Europe/Stockholm", "Europe/Istanbul", "Asia/Kolkata", "Asia/Singapore",
    "Asia/Tokyo", "Asia/Shanghai", "Australia/Sydney", "Pacific/Auckland",
    "Africa/Lagos", "Africa/Johannesburg", "UTC",
]
LOCALES = ["en", "en", "en", "en-GB", "en-US", "de", "fr", "es", "it", "pl",
           "pt-BR", "ja", "nl", "sv"]
MARKETS = [
    # (name, order link, feedback link or "" when the marketplace asks itself)
    ("shop", "https://shop.example/o/{id}", "https://shop.example/fb/{id}"),
    ("amazon-us", "https://amzn.example/o/{id}", ""),
    ("etsy", "https://etsy.example/o/{id}", "https://etsy.example/fb/{id}"),
    ("ebay-de", "https://ebay.example/o/{id}", ""),
]
# Each marketplace's own order number format; all unique by the row number.
ORDER_ID = {
    "shop": lambda i, rng: f"S{i:07d}",
    "amazon-us": lambda i, rng: f"{100 + i % 900:03d}-{i:07d}-{rng.randrange(10**7):07d}",
    "etsy": lambda i, rng: f"{2900000000 + i}",
    "ebay-de": lambda i, rng: f"{10 + i % 90:02d}-{i // 100000:05d}-{i % 100000:05d}",
}
CARRIERS = [
    "https://ups.example/t/1Z{n:012d}",
    "https://dhl.example/t/{n:010d}",
    "https://post.example/t/RR{n:09d}GB",
]


def pad_name(name, length, rng):
    if length <= len(name):
        return name
    words = [name, "-"]
    size = len(name) + 2
    start = rng.randrange(len(PAD_WORDS))
    i = 0
    while size < length:
        w = PAD_WORDS[(start + i) % len(PAD_WORDS)]
        words.append(w)
        size += len(w) + 1
        i += 1
    return " ".join(words)[:length].rstrip(" ,")


def dates(rng, args):
    """(shipped_at, delivered_at, status) for one order."""
    if args.due_now:
        return "-1h", "", "shipped"
    if args.shipped_at:
        return args.shipped_at, "", "shipped"
    r = rng.random()
    if r < 0.05:
        return "", "", "pending"
    ship_h = rng.randrange(1, 21 * 24)
    shipped = f"-{ship_h}h" if ship_h < 72 else f"-{ship_h // 24}d"
    if r < 0.40 or ship_h < 48:
        return shipped, "", "shipped"
    deliv_h = ship_h - rng.randrange(24, min(ship_h, 8 * 24) + 1)
    delivered = f"-{max(deliv_h, 1)}h" if deliv_h < 72 else f"-{deliv_h // 24}d"
    if deliv_h >= ship_h:
        delivered = ""
    if r < 0.93:
        return shipped, delivered, "delivered" if delivered else "shipped"
    return shipped, delivered, rng.choice(["returned", "refunded", "cancelled"])


def generate(args, out):
    rng = random.Random(args.seed)
    w = csv.writer(out, lineterminator="\n")
    header = list(HEADER)
    if args.extra_bytes:
        header.append("gift_message")
    w.writerow(header)
    calm = args.due_now or args.shipped_at
    for i in range(args.start, args.start + args.n):
        market, order_url, review_url = (
            MARKETS[0] if args.marketplace == "shop-only" else rng.choice(MARKETS)
        )
        oid = ORDER_ID[market](i, rng)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        local = f"{first}.{last}".lower().translate(ASCII)
        if not local.isascii():
            local = f"buyer{i}"
        email = f"{local}{rng.randrange(1000) if rng.random() < 0.6 else ''}@{rng.choice(DOMAINS)}"
        product = f"{rng.choice(ADJ)} {rng.choice(ITEM)}, {rng.choice(COLOUR)}"
        if args.pad_product:
            product = pad_name(product, args.pad_product, rng)
        shipped, delivered, status = dates(rng, args)
        # Exports mostly leave the flags empty (= false).
        complaint = "" if calm else ("true" if rng.random() < 0.02 else "")
        opted = "" if calm else ("true" if rng.random() < 0.01 else "")
        tracking = rng.choice(CARRIERS).format(n=rng.randrange(10**9)) if shipped else ""
        row = [
            oid, market, email, name, product, rng.choice(LOCALES),
            rng.choice(ZONES), shipped, delivered, status, complaint, opted,
            order_url.format(id=oid), tracking, review_url.format(id=oid) if review_url else "",
        ]
        if args.extra_bytes:
            row.append(pad_name("Happy birthday", args.extra_bytes, rng))
        w.writerow(row)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=1000, help="number of orders (default 1000)")
    p.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--start", type=int, default=1, help="first order number (default 1)")
    p.add_argument("--due-now", action="store_true", help="every shipment due now (shipped_at -1h)")
    p.add_argument("--shipped-at", default="", help="every order shipped at this time")
    p.add_argument("--pad-product", type=int, default=0, metavar="C",
                   help="pad product names to C characters")
    p.add_argument("--extra-bytes", type=int, default=0, metavar="B",
                   help="add an extra column of B characters")
    p.add_argument("--marketplace", choices=["mixed", "shop-only"], default="mixed")
    args = p.parse_args()
    if args.due_now and args.shipped_at:
        p.error("--due-now and --shipped-at exclude each other")
    if args.output == "-":
        out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        generate(args, out)
        out.flush()
    else:
        with open(args.output, "w", encoding="utf-8", newline="", buffering=1 << 20) as f:
            generate(args, f)


if __name__ == "__main__":
    main()
