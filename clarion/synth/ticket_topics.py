"""Support ticket topics: finer than the five categories, each with its own words and many wordings.

A ticket's message is composed from parts: an opening (by sentiment), a core sentence (by topic and
sentiment, with {slots} filled from synonyms) and a closing (by sentiment), so a few thousand
tickets carry hundreds of distinct messages and topic recovery has real variety to work through.
Every sentence the generator wrote before topics existed is still one of the cores (those keep the
old "{order}" reference, "#123456"); newer cores write "{ref}": "order #123456", "order no. 123456",
"order 123456" or "order number 123456", which a scrubber must recognise too.
"""

from __future__ import annotations

# topic -> (ticket category, weight within the category for tickets not tied to a delivery)
TOPICS: dict[str, tuple[str, float]] = {
    "late_delivery": ("delivery", 0.45),
    "lost_parcel": ("delivery", 0.30),
    "damaged_in_transit": ("delivery", 0.25),
    "refund_delay": ("refund", 1.0),
    "faulty_item": ("product", 0.6),
    "sizing_exchange": ("product", 0.4),
    "login_problem": ("account", 0.5),
    "account_details": ("account", 0.5),
    "double_charge": ("billing", 0.55),
    "invoice_request": ("billing", 0.45),
}
TOPIC_NAMES = tuple(TOPICS)
# a complaint about a late (1) or lost (2) parcel is about that (index into DELIVERY_STATUSES)
TOPIC_OF_DELIVERY = {1: "late_delivery", 2: "lost_parcel"}

SUBJECTS: dict[str, list[str]] = {
    "late_delivery": ["Late delivery", "Where is my parcel?", "Delivery question", "Still waiting"],
    "lost_parcel": ["Order not received", "Where is my parcel?", "Parcel missing"],
    "damaged_in_transit": ["Parcel arrived damaged", "Delivery question", "Damaged box"],
    "refund_delay": ["Refund request", "Money back please", "Return and refund", "Refund status"],
    "faulty_item": ["Problem with my item", "Item arrived damaged", "Product question"],
    "sizing_exchange": ["Sizing question", "Exchange request", "Product question"],
    "login_problem": ["Cannot log in", "Password reset", "Login trouble"],
    "account_details": ["Change my details", "Account question", "Update my address"],
    "double_charge": ["Charged twice", "Wrong amount charged", "Payment failed"],
    "invoice_request": ["Invoice request", "Receipt please", "VAT invoice"],
}

OPENINGS: dict[str, list[str]] = {
    "negative": [
        "",
        "",
        "I am writing to complain.",
        "Not happy at all.",
        "This is getting ridiculous.",
        "I am really disappointed.",
        "Sorry, but I have to complain again.",
    ],
    "neutral": ["", "", "Quick question.", "I hope you can help.", "A question about my account."],
    "positive": ["", "", "Thank you for the great service so far.", "Love your shop!", "Hope you are well."],
}
CLOSINGS: dict[str, list[str]] = {
    "negative": [
        "",
        "",
        "Please sort this out.",
        "I expect an answer today.",
        "This is not acceptable.",
        "Very unhappy with this.",
        "I will not order again if this is not fixed.",
    ],
    "neutral": ["", "", "Thanks in advance.", "Let me know.", "Many thanks.", "No rush."],
    "positive": ["", "", "Thanks again!", "Keep up the great work.", "Have a nice day."],
}

SLOTS: dict[str, list[str]] = {
    "parcel": ["parcel", "package", "delivery", "box"],
    "item": ["item", "product", "piece"],
    "weeks": ["two weeks", "three weeks", "a month", "ten days"],
    "courier": ["courier", "driver", "delivery company"],
    "login": ["log in", "sign in", "get into my account"],
    "refund": ["refund", "money", "reimbursement"],
    "charged": ["charged twice", "billed twice", "charged two times"],
}

# (topic, sentiment) -> cores. Legacy sentences (verbatim) use {order}; new ones {ref} and {slots}.
CORES: dict[tuple[str, str], list[str]] = {
    ("late_delivery", "negative"): [
        "My order {order} was due last week and still hasn't arrived. This is the second time. Really disappointed.",  # noqa: E501
        "My {parcel} for {ref} is {weeks} late and the tracking has not moved.",
        "Still waiting for {ref}, it was promised for Monday. Terrible service.",
        "The delivery date for {ref} keeps slipping and nobody tells me why.",
        "{ref} is late again, the tracking just says in transit.",
    ],
    ("late_delivery", "neutral"): [
        "Could you tell me when order {order} will arrive? The tracking page has not changed.",
        "I will be away next week, can order {order} be delivered to a neighbour?",
        "Is there a new delivery date for {ref}? The tracking still shows in transit.",
        "When can I expect my {parcel} for {ref}? It said three to five days.",
    ],
    ("late_delivery", "positive"): [
        "Order {order} arrived a day early, thank you! Just checking whether the invoice is in the box.",
        "My {parcel} for {ref} was a little late but the {courier} was lovely. Thanks!",
        "Thanks for keeping me updated about the delay on {ref}, it arrived today.",
    ],
    ("lost_parcel", "negative"): [
        "Order {order} shows delivered but nothing came. Nobody answers the phone. Terrible service.",
        "The tracking for {ref} says delivered but there is no {parcel} anywhere.",
        "My {parcel} for {ref} is lost. The {courier} says it is your problem, you say it is theirs.",
        "{ref} never arrived and I have been waiting {weeks}. Where is my {parcel}?",
    ],
    ("lost_parcel", "neutral"): [
        "Tracking for {ref} says delivered but I cannot find the {parcel}. Can you ask the {courier}?",
        "My {parcel} for {ref} seems to be missing. What are the next steps?",
        "Can you open an investigation for {ref}? It never reached me.",
    ],
    ("lost_parcel", "positive"): [
        "The {parcel} for {ref} I reported missing turned up at a neighbour, thank you for checking!",
        "Thanks for sending a replacement so quickly when {ref} went missing.",
    ],
    ("damaged_in_transit", "negative"): [
        "The courier left my parcel ({order}) in the rain and everything is soaked. Not acceptable.",
        "The box for {ref} arrived crushed and the {item} inside is broken.",
        "My {parcel} for {ref} was torn open and the {item} is scratched.",
        "The {courier} clearly threw the {parcel} for {ref}, the contents are dented.",
    ],
    ("damaged_in_transit", "neutral"): [
        "The box for {ref} arrived a bit dented. The {item} seems fine, should I report it anyway?",
        "The packaging of {ref} was wet when it arrived, can you note this in case of problems?",
        "How do I report transport damage on {ref}? I have photos of the {parcel}.",
    ],
    ("damaged_in_transit", "positive"): [
        "The {parcel} for {ref} arrived damaged but you replaced it straight away, thanks!",
        "Thanks for the quick help with the crushed box on {ref}, the new one came perfect.",
    ],
    ("refund_delay", "negative"): [
        "I returned order {order} three weeks ago and still no refund. I am losing patience.",
        "You refused my refund for {order} even though the item was faulty. I want this escalated.",
        "I sent {ref} back {weeks} ago and I still have not seen my {refund}.",
        "Where is my {refund} for {ref}? You confirmed the return {weeks} ago.",
    ],
    ("refund_delay", "neutral"): [
        "I sent back part of order {order}. How long does the refund usually take?",
        "Please confirm you received my return for order {order}.",
        "Has my return of {ref} been processed? I have not seen the {refund} yet.",
        "When will the {refund} for {ref} show on my card?",
    ],
    ("refund_delay", "positive"): [
        "Thanks for the quick refund on {order}. Could you also send a return label for the second item?",
        "The {refund} for {ref} came through quickly, thank you!",
    ],
    ("faulty_item", "negative"): [
        "The item from order {order} broke after two days. Cheap quality, I expected better from you.",
        "What I received in {order} looks nothing like the photos. Very unhappy with this purchase.",
        "Second faulty product in a row ({order}). I am thinking about shopping elsewhere.",
        "The {item} from {ref} stopped working after a week.",
        "The seams on the {item} from {ref} came apart the first time I used it.",
    ],
    ("faulty_item", "neutral"): [
        "How should I wash the item from order {order}?",
        "The zip on the {item} from {ref} is stiff, is that normal?",
        "The {item} from {ref} has a small mark, can I get a replacement?",
    ],
    ("faulty_item", "positive"): [
        "Great quality on order {order}. Do you ship gift wrapping?",
        "The replacement {item} for {ref} works perfectly, thank you.",
    ],
    ("sizing_exchange", "negative"): [
        "The {item} from {ref} is two sizes too small although I followed your size chart. Useless.",
        "I asked to exchange {ref} for a bigger size {weeks} ago and heard nothing.",
        "Your size guide is wrong, the {item} from {ref} does not fit at all.",
    ],
    ("sizing_exchange", "neutral"): [
        "Does the item in order {order} come in a larger size? I would like to exchange it.",
        "Can I exchange the {item} from {ref} for a smaller size?",
        "The {item} from {ref} fits a bit tight, how do I swap it for the next size?",
    ],
    ("sizing_exchange", "positive"): [
        "Love the item from {order}! Will it be back in other colours?",
        "The exchange for {ref} went smoothly and the new size fits perfectly.",
    ],
    ("login_problem", "negative"): [
        "I have tried to reset my password five times and the link never works. Fix this please.",
        "I cannot {login} at all, the page just reloads.",
        "Your website locked me out again and the password reset e-mail never comes.",
    ],
    ("login_problem", "neutral"): [
        "I cannot {login}, could you send me a password reset link?",
        "The password reset link has expired, can I get a new one?",
        "How do I {login} after changing my phone?",
    ],
    ("login_problem", "positive"): [
        "The new password link worked and I can {login} again, thanks!",
        "Thanks for unlocking my account so fast.",
    ],
    ("account_details", "negative"): [
        "I changed my address three times and your system still uses the old one.",
        "Your account page will not save my new address. Very frustrating.",
    ],
    ("account_details", "neutral"): [
        "Please update my delivery address for future orders.",
        "How do I change the e-mail address on my account?",
        "Can you change the name on my account? I recently married.",
        "Please remove my old address from my account.",
    ],
    ("account_details", "positive"): [
        "Thanks for the help setting up my account last time. One more question about saved addresses.",
        "Updating my details was easy, thanks for the clear instructions.",
    ],
    ("double_charge", "negative"): [
        "I was charged twice for order {order}. I want the duplicate payment back immediately.",
        "The amount taken for {order} is higher than at checkout. This is misleading.",
        "My card was {charged} for {ref}. Give me my money back.",
        "You took two payments for {ref} and my bank says it is up to you.",
    ],
    ("double_charge", "neutral"): [
        "My card payment for {order} failed, can I pay another way?",
        "I see two payments for {ref} on my statement, is one of them only a reservation?",
        "It looks like I was {charged} for {ref}, could you check?",
    ],
    ("double_charge", "positive"): [
        "Thanks for refunding the double payment on {ref} so fast.",
        "You spotted that I was {charged} for {ref} before I did, thank you!",
    ],
    ("invoice_request", "negative"): [
        "I have asked for an invoice for {ref} three times now. Still nothing.",
        "The invoice for {ref} has the wrong company name again. Please fix it.",
    ],
    ("invoice_request", "neutral"): [
        "Could you send me a VAT invoice for order {order}?",
        "I need an invoice with my company name for {ref}.",
        "Can you send the receipt for {ref} as a PDF?",
    ],
    ("invoice_request", "positive"): [
        "Payment for {order} went through fine, I just need a copy of the receipt. Thanks!",
        "Thanks for the invoice for {ref}, could you also send one for my earlier order?",
    ],
}

# how a new core names the order ({ref}); {n} is the order id
REF_FORMS = ["order #{n}", "order no. {n}", "order {n}", "order number {n}"]
NO_ORDER_REFS = ["my last order", "my recent order"]
