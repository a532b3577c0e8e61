"""Word problems written for this project: templates with hand-chosen numbers and names.

Each entry is (template, [value dicts]); the numbers are chosen so that answers are whole or
simple numbers.
"""

PROBLEMS = [
    ("{name} buys {n} notebooks at {p} euros each and pays with a {bill}-euro note. How much change does {name} get?",
     [dict(name="Amara", n=4, p=3, bill=20), dict(name="Jonas", n=7, p=2, bill=50),
      dict(name="Keiko", n=3, p=6, bill=20), dict(name="Rafael", n=9, p=4, bill=50)]),
    ("A train leaves at {h}:00 and travels {d} kilometres at an average speed of {v} kilometres per hour. When does it reach its destination?",
     [dict(h=8, d=240, v=80), dict(h=13, d=150, v=60), dict(h=6, d=420, v=120), dict(h=10, d=90, v=45)]),
    ("A garden is {l} metres long and {w} metres wide. {name} wants to put a fence around it, with a gate {g} metre wide that needs no fence. How many metres of fence are needed?",
     [dict(l=12, w=8, g=1, name="Olga"), dict(l=20, w=15, g=2, name="Tariq"), dict(l=9, w=6, g=1, name="Beatriz"),
      dict(l=30, w=10, g=3, name="Henrik")]),
    ("In a class of {total} pupils, {pct} percent walk to school and {bus} pupils take the bus. The rest come by bicycle. How many pupils come by bicycle?",
     [dict(total=30, pct=40, bus=10), dict(total=25, pct=20, bus=12), dict(total=40, pct=25, bus=18),
      dict(total=32, pct=50, bus=6)]),
    ("{name} is {a} years old. {name}'s mother is {k} times as old. In how many years will the mother be exactly twice as old as {name}?",
     [dict(name="Lucia", a=8, k=4), dict(name="Emeka", a=10, k=4), dict(name="Sven", a=6, k=6), dict(name="Nadia", a=12, k=3)]),
    ("A recipe for {s} people needs {f} grams of flour and {e} eggs. How much flour and how many eggs are needed for {t} people?",
     [dict(s=4, f=300, e=2, t=10), dict(s=6, f=450, e=3, t=8), dict(s=2, f=150, e=1, t=6), dict(s=5, f=400, e=5, t=15)]),
    ("A shop sells a jacket for {p} euros. During a sale the price is reduced by {d} percent, and members get a further {m} percent off the sale price. What does a member pay?",
     [dict(p=80, d=25, m=10), dict(p=120, d=20, m=5), dict(p=60, d=50, m=10), dict(p=200, d=30, m=20)]),
    ("A tank holds {c} litres. One pipe fills it in {a} hours and another in {b} hours. How long does it take to fill the empty tank with both pipes open?",
     [dict(c=600, a=3, b=6), dict(c=1200, a=4, b=12), dict(c=900, a=6, b=3), dict(c=500, a=2, b=2)]),
    ("{name} saves {w} euros every week. {name} already has {h} euros and wants to buy a bicycle that costs {c} euros. How many weeks will it take?",
     [dict(name="Ingrid", w=15, h=40, c=250), dict(name="Kofi", w=20, h=0, c=180), dict(name="Mei", w=12, h=60, c=300),
      dict(name="Pavel", w=25, h=75, c=400)]),
    ("A farmer has chickens and goats. Together they have {heads} heads and {legs} legs. How many chickens and how many goats are there?",
     [dict(heads=20, legs=56), dict(heads=35, legs=100), dict(heads=12, legs=30), dict(heads=50, legs=140)]),
    ("A car uses {u} litres of fuel per 100 kilometres. Fuel costs {p} euros per litre. How much does the fuel cost for a trip of {d} kilometres?",
     [dict(u=6, p=2, d=350), dict(u=8, p=1.5, d=500), dict(u=5, p=2, d=120), dict(u=7, p=1.8, d=200)]),
    ("{a} workers can paint a fence in {d} days. How many days would {b} workers need, working at the same speed?",
     [dict(a=4, d=6, b=3), dict(a=6, d=10, b=5), dict(a=3, d=8, b=12), dict(a=5, d=9, b=15)]),
    ("A cinema has {r} rows of {s} seats. For a film {sold} tickets were sold. What percentage of the seats were empty?",
     [dict(r=12, s=20, sold=180), dict(r=10, s=25, sold=200), dict(r=8, s=15, sold=60), dict(r=20, s=30, sold=450)]),
    ("{name} reads {p} pages every school day and {q} pages on Saturdays and Sundays. How many days does it take to finish a book of {n} pages if {name} starts on a Monday?",
     [dict(name="Aiko", p=20, q=50, n=300), dict(name="Dmitri", p=15, q=40, n=200), dict(name="Zainab", p=30, q=30, n=270),
      dict(name="Lars", p=10, q=60, n=150)]),
    ("The sum of three consecutive whole numbers is {s}. What are the numbers?",
     [dict(s=72), dict(s=150), dict(s=33)]),
    ("A rectangle has a perimeter of {p} centimetres, and its length is {k} times its width. What is its area?",
     [dict(p=48, k=3), dict(p=60, k=2), dict(p=36, k=5)]),
]

INSTRUCTIONS = [
    "{problem}",
    "{problem} Show your reasoning step by step.",
    "Solve this word problem and explain each step: {problem}",
]
