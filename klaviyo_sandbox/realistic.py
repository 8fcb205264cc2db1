"""``--data realistic``: event and profile properties shaped like real integrations' data.

The standard data keeps properties small. Real accounts are busier: a dozen metrics from
Shopify, Klaviyo's email/SMS/forms and onsite tracking, each with its own property set
(about 45 distinct top-level properties across them), Shopify's ``Placed Order`` with
nested addresses and an array of line items (each with a nested variant), and values whose
JSON type changes between records (``ProductID`` a number or a string, ``$value`` an
integer or a float, ``Tags`` a string or an array, ``Zip`` a number or a string). The
shapes follow Klaviyo's documented Shopify and onsite metrics (help center: "Shopify data
reference", "Guide to Klaviyo's Active on Site and Viewed Product metrics"); the values are
invented. Deterministic: every value comes from the caller's seeded :class:`Rng`.
"""

from __future__ import annotations

import zlib

from .util import Rng

BRANDS = ["Northwind", "Acme Outdoor", "Café Tortue", "Blue Ox", "Ünïcorn Supply"]
CATEGORIES = ["Shoes", "Home", "Gifts", "Sale", "New Arrivals", "Kitchen", "Outdoor", "Kids"]
CATALOG = [  # (name, price, product id, SKU, brand)
    ("Trail Shoe", 89.0, 7012345678901, "TS-42-BLK", "Acme Outdoor"),
    ("Café Mug ☕", 14.5, 7012345678902, "MUG-CAFE", "Café Tortue"),
    ("Tote / Bag", 35.0, 7012345678903, "TOTE-NAT", "Northwind"),
    ("Gift Card 🎁", 50, 7012345678904, "GIFT-50", "Northwind"),
    ("Socks (3-pack)", 12.99, 7012345678905, "SOCK-3P", "Blue Ox"),
    ("Rain Jacket", 149.0, 7012345678906, "RJ-M-OLV", "Acme Outdoor"),
    ("Cutting Board", 42.25, 7012345678907, "CB-WAL", "Ünïcorn Supply"),
    ("Kids Beanie", 18.0, 7012345678908, "BN-KID-RED", "Blue Ox"),
]
CITIES = [("Boston", "MA", "US", "02139"), ("Lyon", "ARA", "FR", 69001), ("São Paulo", "SP", "BR", "01310-100"),
          ("Osaka", "27", "JP", "530-0001"), ("Austin", "TX", "US", 78701)]  # fmt: skip
SHOP = "https://shop.example.com"


def _product_id(r: Rng, pid: int) -> int | str:
    return pid if r.chance(0.6) else str(pid)  # Shopify's numeric id, sometimes sent as text


def _money(value: float) -> int | float:
    value = round(value, 2)
    return int(value) if value == int(value) else value  # integer-valued totals arrive as integers


def _address(r: Rng, first: str) -> dict:
    city, region, country, zipc = r.choice(CITIES)
    return {
        "FirstName": first, "LastName": r.choice(["Martin", "Sato", "Silva", "Smith"]),
        "Company": r.choice([None, "Acme Corp"]), "Address1": f"{r.int(1, 999)} Main St",
        "Address2": r.choice([None, "", f"Apt {r.int(1, 40)}"]), "City": city, "Region": region,
        "RegionCode": region, "Country": country, "CountryCode": country, "Zip": zipc,
        "Phone": r.choice([None, f"+1555{r.int(1000000, 9999999)}"]),
    }  # fmt: skip


def _line_item(r: Rng) -> dict:
    name, price, pid, sku, brand = r.choice(CATALOG)
    quantity = r.int(1, 4)
    return {
        "ProductID": _product_id(r, pid), "SKU": sku, "ProductName": name,
        "Quantity": quantity if r.chance(0.9) else str(quantity), "ItemPrice": price,
        "RowTotal": _money(price * quantity), "ProductURL": f"{SHOP}/products/{sku.lower()}",
        "ImageURL": f"https://cdn.example.com/{sku}.jpg", "Categories": r.sample(CATEGORIES, r.int(1, 3)),
        "Brand": brand,
        "Variant": {"id": pid * 10 + r.int(0, 9), "title": r.choice(["S", "M", "L", "Default Title"]),
                    "options": {"Size": r.choice(["S", "M", "L"]), "Colour": r.choice(["black", "olive", None])}},
    }  # fmt: skip


def _order(r: Rng, i: int) -> dict:
    items = [_line_item(r) for _ in range(r.int(1, 5))]
    value = sum(item["RowTotal"] for item in items)
    discount = r.choice([0, 0, 5, 10.5])
    first = r.choice(["Ana", "Kenji", "Léa", "Sam"])
    return {
        "$event_id": str(4_000_000 + i), "$value": _money(value - discount), "$currency_code": "USD",
        "OrderId": 4_000_000 + i, "Categories": sorted({c for item in items for c in item["Categories"]}),
        "ItemNames": [item["ProductName"] for item in items], "Brands": sorted({item["Brand"] for item in items}),
        "Discount Codes": [] if discount == 0 else ["WELCOME10"], "Total Discounts": discount,
        "Source Name": r.choice(["web", "pos", "shopify_draft_order"]), "Items": items,
        "BillingAddress": _address(r, first), "ShippingAddress": _address(r, first),
        "ShippingRate": r.choice([0, 4.99, "7.50"]), "Tags": r.choice(["", "vip", ["vip", "wholesale"]]),
        "fulfillment_status": r.choice([None, "fulfilled", "partial"]),
    }  # fmt: skip


def _product(r: Rng) -> dict:
    name, price, pid, sku, brand = r.choice(CATALOG)
    return {
        "ProductName": name, "ProductID": _product_id(r, pid), "SKU": sku, "Categories": r.sample(CATEGORIES, 2),
        "ImageURL": f"https://cdn.example.com/{sku}.jpg", "URL": f"{SHOP}/products/{sku.lower()}",
        "Brand": brand, "Price": price, "CompareAtPrice": r.choice([None, _money(price * 1.2)]),
    }  # fmt: skip


def _cart(r: Rng, i: int) -> dict:
    items = [_line_item(r) for _ in range(r.int(1, 3))]
    added = items[-1]
    return {
        "$value": _money(sum(item["RowTotal"] for item in items)), "AddedItemProductName": added["ProductName"],
        "AddedItemProductID": added["ProductID"], "AddedItemSKU": added["SKU"],
        "AddedItemPrice": added["ItemPrice"], "AddedItemQuantity": added["Quantity"],
        "ItemNames": [item["ProductName"] for item in items], "Items": items,
        "CheckoutURL": f"{SHOP}/checkouts/{i:x}",
    }  # fmt: skip


def _email(r: Rng, clicked: bool) -> dict:
    props = {
        "Subject": r.choice(["Big news 🎉", "Your cart misses you", "Nouveautés de la semaine"]),
        "Campaign Name": r.choice(["Summer Sale", "Black Friday", "Welcome back"]),
        "$message": r.int(1, 500), "Email Domain": r.choice(["gmail.com", "example.com", "yahoo.co.jp"]),
        "machine_open": r.chance(0.2), "$ESP": r.choice([0, 1, "Gmail"]),
        "Client Type": r.choice(["Webmail", "Mobile", "Desktop", None]),
        "Client OS": r.choice(["iOS", "Android", "macOS"]),
    }  # fmt: skip
    if clicked:
        props["URL"] = f"{SHOP}/c/{r.int(1, 40)}?utm_source=klaviyo"
        props["Client Name"] = r.choice(["Gmail", "Apple Mail", "Outlook"])
    return props


def _sms(r: Rng) -> dict:
    return {
        "Message Body": "Flash sale ⚡ today only", "Carrier": r.choice(["T-Mobile", "Verizon", None]),
        "$message": r.int(1, 500), "Message Type": r.choice(["campaign", "flow"]),
        "Segments": r.choice([1, 2, "1"]),
    }  # fmt: skip


def _site(r: Rng) -> dict:
    return {
        "page": f"{SHOP}/{r.choice(['', 'sale', 'about', 'collections/shoes'])}", "$session_id": r.bits() % 10**9,
        "$referrer": r.choice([None, "https://www.google.com/", "https://instagram.com/"]),
        "browser": {"name": r.choice(["Chrome", "Safari", "Firefox"]), "version": r.choice([120, "17.2", 121.0])},
        "$is_session_activity": r.chance(0.5),
    }  # fmt: skip


def _form(r: Rng) -> dict:
    return {
        "$form": f"Form{r.int(1, 9)}", "form_type": r.choice(["popup", "flyout", "embed"]),
        "List": r.choice(["Newsletter", "VIP"]), "$source": r.choice(["Popup", -9, "Embed"]),
        "Consent": r.sample(["email", "sms"], r.int(1, 2)),
    }  # fmt: skip


def _refund(r: Rng, i: int) -> dict:
    items = [_line_item(r) for _ in range(r.int(1, 2))]
    return {
        "$value": _money(sum(item["RowTotal"] for item in items)), "OrderId": 4_000_000 + i,
        "Reason": r.choice(["damaged", "wrong size", None]), "Items": items, "Tags": r.choice(["", ["refund"]]),
    }  # fmt: skip


#: The twelve property families, by Klaviyo metric name; other metrics take one by their name.
FAMILIES = {
    "Placed Order": _order,
    "Fulfilled Order": lambda r, i: {**_order(r, i), "FulfillmentHours": r.choice([2, 26.5, "48"])},
    "Ordered Product": lambda r, i: {**_product(r), "$value": _money(r.money(5, 150)), "Quantity": r.int(1, 4)},
    "Viewed Product": lambda r, i: _product(r),
    "Added to Cart": _cart,
    "Started Checkout": lambda r, i: {**_cart(r, i), "Categories": r.sample(CATEGORIES, 2)},
    "Opened Email": lambda r, i: _email(r, clicked=False),
    "Clicked Email": lambda r, i: _email(r, clicked=True),
    "Received SMS": lambda r, i: _sms(r),
    "Active on Site": lambda r, i: _site(r),
    "Submitted Form": lambda r, i: _form(r),
    "Refunded Order": _refund,
}
_FAMILY_LIST = list(FAMILIES.values())


def event_properties(r: Rng, name: str, i: int) -> dict:
    family = FAMILIES.get(name) or _FAMILY_LIST[zlib.crc32(name.encode()) % len(_FAMILY_LIST)]
    return family(r, i)


def profile_properties(r: Rng, props: dict) -> dict:
    """The standard profile properties plus what Shopify and onsite forms add, typed loosely."""
    props.update({
        "shopify_tags": r.choice(["", "vip", ["vip", "newsletter"]]),
        "accepts_marketing": r.choice([True, False, "yes"]),
        "total_spent": r.choice([_money(r.money(0, 900)), f"{r.money(0, 900):.2f}"]),
        "orders_count": r.int(0, 60),
        "last_order": {"id": r.int(4_000_000, 4_900_000), "placed_at": f"2026-0{r.int(1, 6)}-1{r.int(0, 9)}T10:00:00Z",
                       "items": [{"sku": r.choice(CATALOG)[3], "qty": r.int(1, 3)} for _ in range(r.int(0, 3))]},
        "quiz": {"skin_type": r.choice(["dry", "oily", None]), "score": r.choice([3, 4.5, "7"])},
        "signup_date": f"2025-{r.int(1, 12):02d}-{r.int(1, 28):02d}",
        "nps": r.choice([None, r.int(0, 10)]),
    })  # fmt: skip
    return props
