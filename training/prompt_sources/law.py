"""Invented contract clauses and legal scenarios, written for this project (no real law cited)."""

CLAUSES = [
    ("lease", "The Tenant shall give the Landlord at least two months' written notice before ending this "
     "lease. Notice given by email is valid only if the Landlord confirms receipt in writing. If the Tenant "
     "leaves without proper notice, the Tenant remains liable for rent until the end of the notice period "
     "or until a new tenant moves in, whichever comes first."),
    ("employment", "During the term of employment and for twelve months after it ends, the Employee shall not "
     "work for any business that competes with the Company within fifty kilometres of the Company's main "
     "office. The Company shall pay the Employee half of the Employee's last monthly salary for each month "
     "this restriction applies."),
    ("software licence", "The Licensee may install the Software on up to five computers owned by the Licensee. "
     "The Licensee shall not rent, sell or sublicense the Software, and shall not attempt to reverse engineer "
     "it except where the law expressly allows this. The licence ends automatically if the Licensee breaks "
     "any of these terms."),
    ("delivery", "The Supplier shall deliver the goods within twenty working days of the order date. For each "
     "full week of delay the Supplier shall pay the Buyer two percent of the order value, up to a maximum of "
     "ten percent. The Supplier is not liable for delays caused by events beyond its reasonable control, "
     "such as floods, strikes at the port or government orders."),
    ("confidentiality", "Each party shall keep secret all confidential information received from the other "
     "party and use it only for the purpose of the joint project. This duty does not apply to information "
     "that was already public, that the receiving party knew before, or that a court orders it to disclose. "
     "The duty lasts for three years after the project ends."),
    ("gym membership", "The membership runs for a minimum of twelve months and then continues month by month. "
     "The Member may cancel after the minimum period with one month's notice. If the Member moves more than "
     "twenty kilometres from the nearest club, the Member may cancel at any time with one month's notice, on "
     "showing proof of the new address."),
    ("freelance design", "The Designer shall deliver three draft logos within ten days and up to two rounds of "
     "changes to the chosen draft. Further changes are charged at sixty euros per hour. Copyright in the final "
     "logo passes to the Client only after the Client has paid all invoices in full; the drafts that were not "
     "chosen remain the property of the Designer."),
    ("car hire", "The Renter must return the car with a full tank. If the tank is not full, the Company will "
     "refuel the car and charge the fuel at twice the pump price plus a service fee of twenty-five euros. "
     "The Renter is liable for damage to the car up to an excess of 1,000 euros, unless the Renter has bought "
     "the additional cover, which reduces the excess to zero."),
    ("holiday booking", "If the Customer cancels the booking more than sixty days before departure, the "
     "deposit of twenty percent is kept and the rest is refunded. Between sixty and fourteen days before "
     "departure, half of the total price is due. Within fourteen days of departure no refund is given. The "
     "Company may cancel the trip if fewer than ten people have booked, in which case the Customer receives a "
     "full refund."),
    ("loan between friends", "Lender lends Borrower 5,000 euros. Borrower shall repay the loan in ten monthly "
     "instalments of 500 euros, the first on the first day of the month after signing. No interest is charged. "
     "If Borrower misses two instalments in a row, the whole remaining amount becomes due at once."),
    ("warranty", "The Seller guarantees that the product will be free of defects for twenty-four months from "
     "delivery. Within this period the Seller will, at its choice, repair or replace a defective product. The "
     "guarantee does not cover wear and tear, damage caused by misuse, or products that have been opened or "
     "repaired by anyone other than the Seller's service centres."),
    ("shared garden", "The owners of houses 1 and 2 share the garden behind both houses. Each owner shall pay "
     "half the cost of maintaining the fence and the hedge. No owner may build a permanent structure in the "
     "garden without the written consent of the other. Either owner may end this arrangement with six months' "
     "notice, after which the garden is divided along the line shown on the attached plan."),
]

CLAUSE_QUESTIONS = [
    "Here is a clause from a {kind} agreement:\n\n\"{text}\"\n\nExplain in plain language what this clause means for each party.",
    "Analyse the following {kind} clause. What are the main obligations, and what risks or unclear points do you see?\n\n{text}",
    "Read this clause from a {kind} contract and answer: which party does it favour, and how could the other party negotiate a fairer version?\n\n{text}",
]

SCENARIOS = [
    ("lease", "A tenant emailed her landlord on the first of March to end her lease, as the clause allowed, but "
     "the landlord never replied. She moved out on the thirtieth of April. The landlord now asks for rent for May and June.",
     "The Tenant shall give the Landlord at least two months' written notice before ending this lease. Notice given by "
     "email is valid only if the Landlord confirms receipt in writing."),
    ("employment", "An engineer left the Company and, four months later, took a job with a competitor sixty "
     "kilometres away. The Company stopped paying the compensation and says the engineer broke the restriction.",
     "For twelve months after the employment ends, the Employee shall not work for any business that competes with the "
     "Company within fifty kilometres of the Company's main office. The Company shall pay the Employee half of the last "
     "monthly salary for each month this restriction applies."),
    ("delivery", "An order worth 40,000 euros was delivered thirty-five working days after the order date. The "
     "Supplier says that a three-day strike at the port caused part of the delay.",
     "The Supplier shall deliver the goods within twenty working days of the order date. For each full week of delay the "
     "Supplier shall pay the Buyer two percent of the order value, up to a maximum of ten percent. The Supplier is not "
     "liable for delays caused by events beyond its reasonable control, such as strikes at the port."),
    ("car hire", "A renter returned a car with a quarter of a tank of fuel and a small dent in the door. He had "
     "not bought the additional cover. The company charged him 1,400 euros for the dent.",
     "If the tank is not full, the Company will refuel the car and charge the fuel at twice the pump price plus a service "
     "fee. The Renter is liable for damage up to an excess of 1,000 euros unless the Renter has bought the additional cover."),
    ("freelance design", "A client used a logo on its website and shop sign but has only paid half of the "
     "designer's final invoice. The client also used one of the rejected drafts for a second product.",
     "Copyright in the final logo passes to the Client only after the Client has paid all invoices in full; the drafts "
     "that were not chosen remain the property of the Designer."),
    ("holiday booking", "A couple cancelled their trip thirty days before departure because of a family "
     "illness. Two weeks later the company cancelled the whole trip because only eight people had booked.",
     "Between sixty and fourteen days before departure, half of the total price is due on cancellation by the Customer. "
     "The Company may cancel the trip if fewer than ten people have booked, in which case the Customer receives a full refund."),
    ("neighbours", "One neighbour built a wooden shed in the shared garden while the other was abroad, and "
     "says it is not permanent because it has no foundation. The other neighbour wants it removed.",
     "No owner may build a permanent structure in the garden without the written consent of the other."),
    ("warranty", "A customer's coffee machine stopped working after twenty months. Before contacting the "
     "seller, her brother opened the machine to look for a loose cable but did not repair anything.",
     "The guarantee does not cover products that have been opened or repaired by anyone other than the Seller's service centres."),
    ("loan", "A borrower paid the first three instalments on time, missed the fourth, paid the fifth late "
     "and missed the sixth. The lender now demands the whole remaining amount.",
     "If Borrower misses two instalments in a row, the whole remaining amount becomes due at once."),
    ("gym membership", "A member who joined eight months ago moves to a city thirty kilometres away and wants "
     "to cancel. The gym says she must stay until the twelve months are over.",
     "The Member may cancel after the minimum period with one month's notice. If the Member moves more than twenty "
     "kilometres from the nearest club, the Member may cancel at any time with one month's notice, on showing proof of the new address."),
    ("confidentiality", "Two years after a joint project ended, one company published a report that included "
     "the other company's sales figures, which it had learned during the project. It argues that the figures "
     "had since been mentioned in a trade magazine.",
     "Each party shall keep secret all confidential information received from the other party. This duty does not apply "
     "to information that was already public. The duty lasts for three years after the project ends."),
    ("software licence", "A small firm installed its licensed software on seven laptops, two of which belong to "
     "freelancers who work for the firm.",
     "The Licensee may install the Software on up to five computers owned by the Licensee. The licence ends automatically "
     "if the Licensee breaks any of these terms."),
]

SCENARIO_QUESTIONS = [
    "Consider this invented {kind} dispute.\n\nFacts: {facts}\n\nRelevant clause: \"{clause}\"\n\nWho is likely to be right under the clause, and why? Mention any points that are open to argument.",
    "Facts: {facts}\nContract term: {clause}\n\nAnalyse the situation step by step and give a reasoned conclusion.",
]
