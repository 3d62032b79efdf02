#!/usr/bin/env python3
"""Deterministic generator of Shopify-shaped "Export orders" CSV.

    python3 bench/gen_shopify.py -n 1000000 -o orders_export.csv   # 1,000,000 rows

Rows, not orders: Shopify writes one row a line item, the first row of an
order carrying the order's columns and the rest only the item's (as in
tests/data/imports/shopify-orders-export.csv, the real sample this copies
the shape of). Orders have 1 to 3 items (2 on average), so n rows are
about n/2 orders. The header is Shopify's own 75 columns; times are in
Shopify's format (2021-05-13 14:01:07 +0200), relative to the moment the
file is generated. Only the Python standard library is used; the same
arguments (and --seed) give byte-identical output for the same start time.
"""

import argparse
import csv
import datetime
import random
import sys

HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,"
    "Currency,Subtotal,Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,"
    "Created at,Lineitem quantity,Lineitem name,Lineitem price,Lineitem compare at price,"
    "Lineitem sku,Lineitem requires shipping,Lineitem taxable,Lineitem fulfillment status,"
    "Billing Name,Billing Street,Billing Address1,Billing Address2,Billing Company,"
    "Billing City,Billing Zip,Billing Province,Billing Country,Billing Phone,Shipping Name,"
    "Shipping Street,Shipping Address1,Shipping Address2,Shipping Company,Shipping City,"
    "Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Notes,Note Attributes,"
    "Cancelled at,Payment Method,Payment Reference,Refunded Amount,Vendor,"
    "Outstanding Balance,Employee,Location,Device ID,Id,Tags,Risk Level,Source,"
    "Lineitem discount,Tax 1 Name,Tax 1 Value,Tax 2 Name,Tax 2 Value,Tax 3 Name,"
    "Tax 3 Value,Tax 4 Name,Tax 4 Value,Tax 5 Name,Tax 5 Value,Phone,Receipt Number,"
    "Duties,Billing Province Name,Shipping Province Name"
).split(",")
COL = {name: i for i, name in enumerate(HEADER)}

FIRST = ["Ann", "Oliver", "Maria", "Jose", "Mei", "Jake", "Sofia", "Liam", "Emma",
         "Lucas", "Lena", "Jonas", "Priya", "Hiroshi", "Chen", "Amara", "Grace"]
LAST = ["Lee", "Hughes", "Lopez", "Garcia", "Tan", "Miller", "Rossi", "Smith",
        "Dubois", "Schmidt", "Nielsen", "Patel", "Tanaka", "Wang", "Mensah", "Silva"]
ADJ = ["Oak", "Walnut", "Linen", "Ceramic", "Copper", "Bamboo", "Wool", "Cotton",
       "Glass", "Marble", "Enamel", "Rattan", "Teak", "Felt", "Porcelain"]
ITEM = ["Desk Lamp", "Pour-Over Set", "Tea Towels", "Serving Board", "Mug",
        "Throw Blanket", "Cushion Cover", "Planter", "Salad Bowl", "Wall Clock",
        "Candle Holder", "Bread Bin", "Teapot", "Cutlery Set", "Vase"]
# (country, province code, province name, city)
PLACES = [
    ("US", "CA", "California", "San Francisco"), ("US", "NY", "New York", "Brooklyn"),
    ("US", "TX", "Texas", "Austin"), ("CA", "ON", "Ontario", "Toronto"),
    ("AU", "NSW", "New South Wales", "Sydney"), ("BR", "SP", "Sao Paulo", "Sao Paulo"),
    ("ZA", "WC", "Western Cape", "Cape Town"), ("GB", "", "", "London"),
    ("DE", "", "", "Berlin"), ("FR", "", "", "Lyon"), ("JP", "", "", "Osaka"),
]
# (financial, fulfillment, share): mostly paid and fulfilled.
STATES = [("paid", "fulfilled", 60), ("paid", "unfulfilled", 15), ("pending", "unfulfilled", 8),
          ("partially_refunded", "fulfilled", 5), ("refunded", "fulfilled", 4),
          ("voided", "unfulfilled", 3), ("paid", "partial", 5)]


def shopify_time(t):
    return t.strftime("%Y-%m-%d %H:%M:%S +0000")


def generate(args, out):
    rng = random.Random(args.seed)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    weights = [s[2] for s in STATES]
    rows, number = 0, 1000
    while rows < args.n:
        number += 1
        items = min(rng.choice((1, 1, 2, 3, 3)), args.n - rows)
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        email = f"{first}.{last}{number}@example.com".lower()
        financial, fulfillment, _ = rng.choices(STATES, weights)[0]
        created = now - datetime.timedelta(hours=rng.randrange(1, 21 * 24))
        fulfilled = created + datetime.timedelta(hours=rng.randrange(1, 48))
        country, code, province, city = rng.choice(PLACES)
        prices = [rng.randrange(500, 20000) / 100 for _ in range(items)]
        subtotal = sum(prices)
        for k in range(items):
            row = [""] * len(HEADER)
            row[COL["Name"]] = f"#{number}"
            row[COL["Email"]] = email
            row[COL["Created at"]] = shopify_time(created)
            row[COL["Lineitem quantity"]] = str(rng.choice((1, 1, 1, 2)))
            row[COL["Lineitem name"]] = f"{rng.choice(ADJ)} {rng.choice(ITEM)}"
            row[COL["Lineitem price"]] = f"{prices[k]:.2f}"
            row[COL["Lineitem sku"]] = f"SKU-{rng.randrange(10**6):06d}"
            row[COL["Lineitem requires shipping"]] = "true"
            row[COL["Lineitem taxable"]] = "true"
            row[COL["Lineitem fulfillment status"]] = fulfillment if fulfillment != "partial" else "pending"
            row[COL["Vendor"]] = "Larkspur"
            row[COL["Lineitem discount"]] = "0.00"
            if k == 0:
                row[COL["Financial Status"]] = financial
                row[COL["Paid at"]] = shopify_time(created) if financial != "pending" else ""
                row[COL["Fulfillment Status"]] = fulfillment
                if fulfillment == "fulfilled":
                    row[COL["Fulfilled at"]] = shopify_time(fulfilled)
                row[COL["Accepts Marketing"]] = rng.choice(("yes", "no"))
                row[COL["Currency"]] = "USD"
                row[COL["Subtotal"]] = f"{subtotal:.2f}"
                row[COL["Shipping"]] = "5.00"
                row[COL["Taxes"]] = "0.00"
                row[COL["Total"]] = f"{subtotal + 5:.2f}"
                row[COL["Discount Amount"]] = "0.00"
                row[COL["Shipping Method"]] = "Standard"
                for side in ("Billing", "Shipping"):
                    row[COL[f"{side} Name"]] = name
                    row[COL[f"{side} Street"]] = f"{number} Example Street"
                    row[COL[f"{side} Address1"]] = f"{number} Example Street"
                    row[COL[f"{side} City"]] = city
                    row[COL[f"{side} Zip"]] = f"'{rng.randrange(10**5):05d}"
                    row[COL[f"{side} Province"]] = code
                    row[COL[f"{side} Country"]] = country
                    row[COL[f"{side} Province Name"]] = province
                row[COL["Payment Method"]] = "Shopify Payments"
                row[COL["Refunded Amount"]] = "0.00"
                row[COL["Outstanding Balance"]] = "0.00"
                row[COL["Id"]] = str(3823857205423 + number)
                row[COL["Risk Level"]] = "Low"
                row[COL["Source"]] = "web"
                if rng.random() < 0.05:
                    row[COL["Notes"]] = "Please leave it at the back door.\nThank you!"
            w.writerow(row)
            rows += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=1000, help="number of rows (default 1000)")
    p.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = p.parse_args()
    if args.output == "-":
        generate(args, sys.stdout)
    else:
        with open(args.output, "w", newline="", encoding="utf-8") as out:
            generate(args, out)


if __name__ == "__main__":
    main()
