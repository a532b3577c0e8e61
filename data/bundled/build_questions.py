"""Source of the bundled question set; writes data/bundled/question.jsonl.

Every text below was written for this project (fictional towns, companies and events; the qa
questions ask well-known facts in our own words). The JSONL is generated from this file so
that long articles stay readable and reviewable here; tests/test_questions.py checks that the
committed JSONL is exactly what this script writes.

    python data/bundled/build_questions.py

Ids come in one block of 1000 per subtask (mt_bench 100001.., translation 101001.., ...), so
adding a question to one subtask never renumbers another; append new questions at the end of
their list so existing ids stay stable.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "question.jsonl"

FIRST_ID = {
    "mt_bench": 100001,
    "translation": 101001,
    "summarization": 102001,
    "qa": 103001,
    "math_reasoning": 104001,
    "rag": 105001,
    "law_analytics": 106001,
    "grammar_correction": 107001,
}


def text(block: str) -> str:
    """Dedent a triple-quoted block; lines of a paragraph are joined, paragraphs kept on their own line."""
    paragraphs = textwrap.dedent(block).strip().split("\n\n")
    return "\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


# ---------------------------------------------------------------------------------------------
# Multi-turn conversation: two questions for each MT-bench category, two turns each.
# (category, first turn, second turn, reference or None)

MT_BENCH = [
    (
        "writing",
        "Write a short welcome letter from the head librarian of the newly reopened Harrowgate Street "
        "Library to the people of the neighbourhood. Mention the new children's reading room, the longer "
        "opening hours on Thursdays and the seed-lending shelf. Keep it under 200 words.",
        "Now turn the letter into three short social media posts of no more than 40 words each: one "
        "aimed at teenagers, one at parents of young children and one at keen gardeners.",
        None,
    ),
    (
        "writing",
        "Write a product description for the Tidewalker, a rain jacket made by a small outdoor clothing "
        "company in the seaside town of Port Elsby. Emphasise that it folds into its own pocket and that "
        "its fabric is made from recycled fishing nets.",
        "Rewrite the description as a formal catalogue entry: remove every marketing adjective and present "
        "only the facts as a bulleted specification list.",
        None,
    ),
    (
        "roleplay",
        "Pretend you are a lighthouse keeper who has looked after the same light on a remote island for "
        "thirty years. A visiting schoolchild asks you about the hardest night of your career. Answer in "
        "character.",
        "The child then asks whether you will miss the job when the lighthouse becomes fully automatic "
        "next spring. Stay in character and answer honestly.",
        None,
    ),
    (
        "roleplay",
        "Act as an experienced barista training a new colleague on their first morning in a busy café. "
        "Explain how to get through the morning rush, including what to do if the milk steamer stops "
        "working.",
        "Your new colleague admits they feel anxious and have already got three orders wrong. Still "
        "speaking as the barista, reply in a way that reassures them without pretending the mistakes did "
        "not matter.",
        None,
    ),
    (
        "reasoning",
        "Five friends, Ada, Bram, Cleo, Dev and Esme, sit in a row of five seats numbered 1 to 5 from left "
        "to right. Ada sits at one end of the row. Bram sits directly next to Esme. Cleo does not sit next "
        "to Ada. Dev sits in seat 2. How many different seating orders satisfy all of these conditions? "
        "List them.",
        "Now add one more condition: Esme sits in seat 5. Which seating order or orders remain? Explain "
        "briefly.",
        "Six orders (left to right): Ada, Dev, Bram, Esme, Cleo; Ada, Dev, Cleo, Bram, Esme; Ada, Dev, "
        "Cleo, Esme, Bram; Ada, Dev, Esme, Bram, Cleo; Cleo, Dev, Bram, Esme, Ada; Cleo, Dev, Esme, Bram, "
        "Ada. With Esme in seat 5 only Ada, Dev, Cleo, Bram, Esme remains.",
    ),
    (
        "reasoning",
        "A bakery sells bread only on days when it is not raining and its oven is working. Last Tuesday "
        "the bakery sold bread. Today it is raining. What can you conclude about last Tuesday, what can "
        "you conclude about today, and what cannot be concluded?",
        "The owner adds: \"Whenever our oven works, we sell bread.\" Taken together with the first rule, "
        "what follows about the oven on rainy days? Is there anything strange about that conclusion?",
        "Last Tuesday it was not raining and the oven was working. Today the bakery does not sell bread; "
        "whether the oven works today cannot be concluded. With the second rule, on any rainy day the "
        "oven cannot be working, which is strange because rain should not break an oven: the owner's "
        "statement is probably only meant for dry days.",
    ),
    (
        "math",
        "A rectangle has a perimeter of 46 cm, and its length is 5 cm more than its width. What is its "
        "area?",
        "If both the length and the width are increased by 20%, by what percentage does the area increase, "
        "and what is the new area?",
        "Width 9 cm, length 14 cm, area 126 cm². The area increases by 44% to 181.44 cm².",
    ),
    (
        "math",
        "Solve for x: 3(x - 4) + 7 = 2x + 9.",
        "Now find all real numbers x such that x² - 14x + 45 = 0, and explain how these solutions relate "
        "to your previous answer.",
        "x = 14. The quadratic has roots 5 and 9, whose sum is 14, the previous answer.",
    ),
    (
        "coding",
        "Write a Python function that takes a list of integers and returns the length of the longest run "
        "of consecutive equal values. For example, [4, 4, 1, 1, 1, 4] should give 3.",
        "Change your function so that it returns both the value and the length of the longest run, and "
        "make it handle an empty list sensibly. Add three test cases.",
        None,
    ),
    (
        "coding",
        "A shop database has two tables: customers(id, name, city) and orders(id, customer_id, total, "
        "placed_at). Write a SQL query that returns, for each city, the number of customers who placed at "
        "least one order in 2023 and the total amount those customers spent in 2023.",
        "Change the query so that cities whose customers placed no orders in 2023 still appear, with a "
        "count of zero and a total of zero.",
        None,
    ),
    (
        "extraction",
        "Read the news item below. Extract every company mentioned, the town where it is based and the "
        "amount of money connected with it, and return the result as a JSON list of objects with the keys "
        "\"company\", \"town\" and \"amount\".\n\n"
        "Brightwater Ferries, based in Kelsey Harbour, announced on Monday that it has agreed to buy the "
        "smaller Oldmere Boat Company of Linford for 4.2 million euros. The deal follows a difficult year "
        "for Oldmere, whose revenue fell to 900,000 euros after the Linford pier was closed. Meanwhile, "
        "Calder & Finch, an engineering firm also based in Kelsey Harbour, confirmed that it has won a "
        "1.5 million euro contract to rebuild the pier by next summer.",
        "Now present the same information as a Markdown table sorted by amount, from largest to smallest.",
        "[{\"company\": \"Brightwater Ferries\", \"town\": \"Kelsey Harbour\", \"amount\": \"4.2 million "
        "euros\"}, {\"company\": \"Oldmere Boat Company\", \"town\": \"Linford\", \"amount\": \"900,000 "
        "euros\"}, {\"company\": \"Calder & Finch\", \"town\": \"Kelsey Harbour\", \"amount\": \"1.5 million "
        "euros\"}]",
    ),
    (
        "extraction",
        "From the notice below, list every event with its date and start time in the format "
        "\"YYYY-MM-DD HH:MM - event\", one per line.\n\n"
        "The Merrow Valley Apple Festival returns this autumn. Orchard tours begin on Saturday 14 "
        "September 2024 at 9:30 and leave every hour after that. The cider-pressing contest takes place on "
        "the following day at 2 pm, and the festival closes with a lantern walk on Friday 20 September at "
        "7:45 pm. Please note that the children's pie-baking class, originally planned for the 15th, has "
        "moved to Wednesday 18 September at 4 pm.",
        "Which of these events take place at the weekend? Answer with the event names only.",
        "2024-09-14 09:30 - Orchard tours; 2024-09-15 14:00 - Cider-pressing contest; 2024-09-18 16:00 - "
        "Children's pie-baking class; 2024-09-20 19:45 - Lantern walk. Weekend: orchard tours, "
        "cider-pressing contest.",
    ),
    (
        "stem",
        "Explain in plain language why a metal spoon feels colder to the touch than a wooden spoon, even "
        "when both have been lying in the same room for hours.",
        "Now explain the same idea to a ten-year-old, using an analogy that has nothing to do with "
        "kitchens.",
        None,
    ),
    (
        "stem",
        "What is the difference between weather and climate? Give one example statement about each.",
        "A friend says that one very cold week in winter proves the climate is not getting warmer. Write a "
        "short, polite reply that explains the flaw in this reasoning.",
        None,
    ),
    (
        "humanities",
        "What are the main arguments for and against making entry to public museums free for everyone? "
        "Consider funding, access and visitor numbers.",
        "The small town museum of Greyhaven must cut its budget by 15%. Propose a plan that keeps at least "
        "one free day a week, and explain the trade-offs you are making.",
        None,
    ),
    (
        "humanities",
        "Explain the economic idea of opportunity cost and illustrate it with an example from a student's "
        "everyday life.",
        "Now write a four-line poem that captures the same idea.",
        None,
    ),
]


# ---------------------------------------------------------------------------------------------
# Translation into English. (source language, source text, English reference)

TRANSLATION = [
    (
        "German",
        "Der Gemeinderat von Kleinfeld hat beschlossen, das alte Schwimmbad zum Ende des Sommers zu "
        "schließen, weil die Reparatur des Dachs mehr kosten würde als der Bau eines neuen Bades.",
        "The Kleinfeld town council has decided to close the old swimming pool at the end of the summer, "
        "because repairing the roof would cost more than building a new pool.",
    ),
    (
        "German",
        "Nach drei Wochen starken Regens befürchten die Bauern im Tal, dass sich die Kartoffelernte in "
        "diesem Jahr verspätet. Einige haben bereits damit begonnen, die Kartoffeln von Hand auszugraben.",
        "After three weeks of heavy rain, the farmers in the valley fear that the potato harvest will be "
        "late this year. Some have already started digging up the potatoes by hand.",
    ),
    (
        "French",
        "La petite boulangerie de la place du port a remporté le prix régional du meilleur croissant, et "
        "depuis, la file d'attente s'étend chaque matin jusqu'au bout de la rue.",
        "The little bakery on the harbour square won the regional prize for the best croissant, and since "
        "then the queue has stretched to the end of the street every morning.",
    ),
    (
        "French",
        "La nouvelle ligne de tramway entre la gare et l'université ouvrira en mars. Selon la mairie, elle "
        "réduira la circulation automobile dans le centre de près d'un cinquième.",
        "The new tram line between the station and the university will open in March. According to the "
        "town hall, it will reduce car traffic in the centre by almost a fifth.",
    ),
    (
        "Spanish",
        "La biblioteca del pueblo ha empezado a prestar herramientas además de libros: los vecinos ya "
        "pueden llevarse un taladro o una escalera con el mismo carné que usan para las novelas.",
        "The village library has started lending tools as well as books: residents can now take home a "
        "drill or a ladder with the same card they use for novels.",
    ),
    (
        "Spanish",
        "Aunque el concierto se canceló en el último momento por la tormenta, el grupo tocó tres canciones "
        "para los aficionados que esperaban bajo el puente.",
        "Although the concert was cancelled at the last minute because of the storm, the band played three "
        "songs for the fans who were waiting under the bridge.",
    ),
    (
        "Italian",
        "Sabato il museo resterà aperto fino a mezzanotte per festeggiare il suo centesimo anniversario, e "
        "l'ingresso sarà gratuito per tutti i nati in città.",
        "On Saturday the museum will stay open until midnight to celebrate its hundredth anniversary, and "
        "entry will be free for everyone born in the city.",
    ),
    (
        "Italian",
        "Mia nonna non ha mai scritto le sue ricette, così quest'inverno abbiamo cucinato insieme ogni "
        "domenica e io ho preso appunti su tutto quello che faceva.",
        "My grandmother never wrote down her recipes, so this winter we cooked together every Sunday and I "
        "took notes on everything she did.",
    ),
    (
        "Portuguese",
        "Os pescadores da ilha aceitaram suspender a pesca da sardinha durante dois meses para que a "
        "população possa recuperar.",
        "The island's fishermen have agreed to suspend sardine fishing for two months so that the "
        "population can recover.",
    ),
    (
        "Portuguese",
        "A start-up, fundada por dois estudantes de engenharia, está a desenvolver uma bicicleta que "
        "carrega o telemóvel do ciclista enquanto ele pedala.",
        "The start-up, founded by two engineering students, is developing a bicycle that charges the "
        "rider's phone while they pedal.",
    ),
    (
        "Dutch",
        "Door de harde wind voer de veerboot naar het eiland dinsdag niet, en tientallen toeristen moesten "
        "de nacht in het havenstadje doorbrengen.",
        "Because of the strong wind, the ferry to the island did not sail on Tuesday, and dozens of "
        "tourists had to spend the night in the little harbour town.",
    ),
    (
        "Dutch",
        "De school heeft de papieren roosters vervangen door een app, maar veel ouders zeggen dat ze nog "
        "steeds liever een uitgeprinte lijst op de koelkast hebben.",
        "The school has replaced its paper timetables with an app, but many parents say they still prefer "
        "a printed list on the fridge.",
    ),
]


# ---------------------------------------------------------------------------------------------
# Summarization: fictional news articles of 250+ words. (article, reference summary)

SUMMARIZATION = [
    (
        text("""
        Alderbury's old landfill site, closed since 1998 and fenced off ever since, began producing
        electricity this week after the town switched on a community-owned solar farm built across its
        grassy slopes.

        The project, which covers roughly eleven hectares, was financed largely by residents. More than
        1,400 people bought shares in the Alderbury Energy Cooperative, with a minimum stake of 50 pounds,
        raising 2.3 million pounds of the 3.1 million needed. A loan from a regional green investment fund
        covered the rest.

        Speaking at the opening on Tuesday, cooperative chair Miriam Okafor said the site had been chosen
        precisely because it could be used for little else. "Nobody can build houses on a landfill, and
        you cannot farm it," she said. "But the sun shines on it just as well as anywhere else."

        Engineers had to take particular care with the ground. Because the waste beneath the surface is
        still settling, the panels sit on concrete blocks resting on the soil rather than on driven piles,
        which could have punctured the clay cap that seals the landfill. Sensors placed across the site
        will monitor any movement.

        The farm is expected to generate about 9 gigawatt-hours a year, enough for roughly 2,800 homes.
        Shareholders will receive an annual return projected at four per cent, and a fixed share of the
        profits will go into a fund for insulating older homes in the town.

        Not everyone is convinced. A group of residents living on Millbrook Lane, the nearest street, had
        objected during planning that the panels would reflect glare towards their houses. The cooperative
        planted a row of hawthorn and hazel along the northern boundary in response, though some
        neighbours say it will take years to grow tall enough.

        The council's planning committee said it would review the screening after twelve months.
        Meanwhile, sheep from a nearby farm have been brought in to keep the grass between the rows short.
        """),
        "Alderbury has opened a community-owned solar farm on its former landfill, financed mostly by more "
        "than 1,400 resident shareholders. The panels rest on concrete blocks to protect the landfill's "
        "clay cap, and the farm should power about 2,800 homes, with part of the profits paying for home "
        "insulation, although some neighbours are still worried about glare.",
    ),
    (
        text("""
        Ferry services between the mainland port of Carrick Bay and the three Westmoor islands will be cut
        by half next week after crews voted to strike over new rotas that they say leave too little time
        for rest.

        The union representing deckhands and engineers announced on Friday that 78 per cent of members who
        took part in the ballot had backed two 48-hour stoppages, beginning on Monday and Thursday. Turnout
        was 81 per cent.

        At the centre of the dispute is a timetable introduced by Westmoor Lines in April, which added an
        early sailing at 5.40 in the morning and a late return at 11.15 at night during the summer months.
        The company says the changes were requested by island businesses and by commuters who work on the
        mainland. Crews say the longer operating day has been achieved by stretching shifts rather than by
        hiring more staff.

        "Some of our members are finishing after midnight and starting again before six," said union
        organiser Callum Reid. "On a vessel carrying three hundred passengers, tiredness is a safety
        issue, not a matter of comfort."

        Westmoor Lines chief executive Hannah Loft said the rotas complied with all maritime rules on
        working hours and that the company had offered a bonus for the summer season. She added that
        recruitment had begun for twelve additional crew members, but that training and certification take
        several months.

        On strike days the company plans to run a reduced service using managers who hold the necessary
        qualifications, with priority given to medical appointments, school transport and deliveries of
        fresh food. Islanders have been asked to avoid non-essential travel.

        Business owners on Inner Westmoor, the largest island, said the timing could hardly be worse. The
        annual regatta, which usually brings several thousand visitors, is scheduled for the following
        weekend. Talks between the two sides are due to resume at a conciliation service on Saturday.
        """),
        "Westmoor Lines ferry crews will hold two 48-hour strikes next week over summer rotas they say "
        "leave too little rest, while the company says the rotas are legal and it is recruiting twelve "
        "more crew. A reduced service will prioritise essential travel, island businesses fear for the "
        "coming regatta, and talks resume on Saturday.",
    ),
    (
        text("""
        Teenagers at schools that start the day at 9.15 rather than 8.30 sleep on average 34 minutes
        longer on school nights, according to a two-year study published this week by researchers at
        Halden University.

        The team followed 2,600 pupils aged 13 to 17 at twelve secondary schools in the region. Six of the
        schools moved their start time later at the beginning of the study, while the other six kept their
        existing timetable. Pupils wore wrist-based sleep trackers for two weeks in each term and completed
        short questionnaires about mood, concentration and how often they fell asleep in class.

        Lead author Dr Ingrid Salo said the results matched what sleep scientists had long expected.
        "During adolescence the body clock shifts later. Asking a fifteen-year-old to be alert at half
        past eight is a bit like asking an adult to be alert at half past six," she said.

        Pupils at the later-starting schools reported feeling sleepy during lessons about a third less
        often, and attendance at the first lesson of the day rose by four percentage points. However, the
        study found no clear difference in exam results over the two years, which the authors say may
        require a longer follow-up to detect.

        The later start was not without costs. Several of the participating schools had to renegotiate
        bus contracts, and after-school sports clubs finished later, which some parents said made evenings
        more rushed. Teachers at two schools reported that the shorter gap between the end of lessons and
        sunset in winter had reduced outdoor activities.

        Dr Salo said the findings should not be read as a simple instruction to every school. "The benefit
        to sleep is clear, but each community has to weigh it against transport, family routines and staff
        contracts," she said. The regional education office has said it will consider the report before
        deciding whether to offer funding to schools that want to change their hours.
        """),
        "A two-year Halden University study of 2,600 pupils found that teenagers at schools starting at "
        "9.15 instead of 8.30 slept 34 minutes longer, felt sleepy in class less often and attended first "
        "lessons more, though exam results did not clearly change. The later start brought costs for "
        "transport and after-school activities, and the regional education office will consider the "
        "report before deciding on funding.",
    ),
    (
        text("""
        Brackenford Rovers secured promotion to the second division for the first time in forty-one years
        on Saturday, beating local rivals Ashcombe Town 2-1 in front of a sell-out crowd at Mill Road.

        The club needed only a draw to finish in the top two, but fell behind after eleven minutes when
        Ashcombe winger Tobi Adeyemi cut inside and curled a shot into the far corner. For most of the
        first half the home side looked nervous, misplacing simple passes and conceding a series of
        corners.

        The turning point came just before half-time. Rovers captain Dan Whitlow, who joined the club as a
        fourteen-year-old, headed in an equaliser from a free kick, and the mood in the stadium changed at
        once. Twenty minutes into the second half, substitute Lewis Marsh, signed on loan only in January,
        ran onto a long ball from goalkeeper Sam Pryce and finished calmly for what proved to be the
        winning goal.

        Ashcombe pushed forward in the closing stages and hit the crossbar in stoppage time, but Rovers
        held on. When the final whistle blew, hundreds of supporters ran onto the pitch, and the players
        were only able to return for a lap of honour about twenty minutes later.

        Manager Elena Brook, in her second season in charge, praised the squad's resilience. "We were
        bottom of the league in October," she said. "These players never stopped believing, and neither
        did the town." Brook, a former physiotherapist, is the first woman to manage the club.

        Promotion is expected to bring a significant increase in income from broadcasting and ticket sales,
        but it also brings new obligations. The second division requires grounds to have a minimum number
        of covered seats, and Mill Road currently falls about 600 short. The club's chairman, Robert Hale,
        said plans for a new stand had been drawn up and that the club had been given a year to complete
        the work.

        For supporters, such questions could wait. Celebrations continued late into the evening in the
        town centre, where the clock tower was lit up in the club's green and white.
        """),
        "Brackenford Rovers won promotion to the second division for the first time in 41 years by coming "
        "from behind to beat Ashcombe Town 2-1, with goals from captain Dan Whitlow and substitute Lewis "
        "Marsh. Manager Elena Brook praised the squad's resilience, and the club now has a year to add "
        "about 600 covered seats to meet the new division's rules.",
    ),
    (
        text("""
        Residents of Ellsmere began returning to their homes on Wednesday, four days after the River Lune
        burst its banks and flooded more than 300 properties in the lower part of the town.

        The river rose by nearly three metres in less than a day after a week of persistent rain across
        the hills to the west. Water reached the first floor of some houses on Quay Street, and emergency
        crews used boats to rescue around 90 people, including the residents of a care home on Bridge
        Lane. No one was seriously hurt.

        The clean-up is expected to take months. Many households are still without electricity, and the
        town's only secondary school, which was used as an emergency shelter, will remain closed to pupils
        until the end of the week. Volunteers from neighbouring villages have set up a food and clothing
        point in the market hall, and a local builders' merchant has offered dehumidifiers free of charge.

        Questions are now being asked about the town's flood defences. A wall along the river was raised
        in 2009 after a previous flood, but a section near the old mill was left at its original height
        because of a dispute over who owned the land. Water first spilled over at exactly that point,
        according to residents.

        The regional environment agency said it would review the incident but cautioned against drawing
        early conclusions. "The volume of water this week was greater than anything recorded on this
        river," a spokesperson said. "Even a continuous wall might not have held."

        Mayor Priya Anand announced an emergency fund of 250,000 euros for households without insurance
        and said the council would press the national government for additional support. She also
        promised a public meeting next month at which residents could put questions directly to the agency
        and to the engineers responsible for the defences.

        Forecasters expect drier weather for the rest of the week, though river levels will remain high
        for several days.
        """),
        "Ellsmere residents are returning home after the River Lune flooded more than 300 properties and "
        "about 90 people were rescued by boat, with no serious injuries. Residents say the water first "
        "overtopped a section of the flood wall left low because of a land dispute, the environment agency "
        "will review the defences, and the mayor has set up a 250,000-euro fund for uninsured households.",
    ),
    (
        text("""
        Quillfeather, a twenty-person software company based in Harlow Cross, has launched a note-taking
        app that it says can turn handwritten pages into searchable text without sending them to the
        internet.

        The app, called Margin, runs its handwriting recognition entirely on the user's phone or tablet.
        Co-founder Anika Varga said this was a deliberate choice after customer interviews showed that
        many potential users, especially doctors, lawyers and journalists, were uneasy about uploading
        private notes to remote servers. "Your notebook should not need a data centre," she said at the
        launch event on Thursday.

        Early reviews have praised the speed of the recognition and the way the app links notes that
        mention the same names or dates. Reviewers were less impressed with its handling of diagrams, which
        are stored as images and cannot yet be searched.

        Privacy specialists welcomed the approach but urged caution about the app's optional backup
        feature, which stores an encrypted copy of notes with a cloud provider. Tomasz Lind of the digital
        rights group Open Ledger said the company should publish an independent audit of its encryption.
        "Processing on the device is a good start, but people will judge the whole product, including the
        backups," he said. Quillfeather said an audit by an outside firm was under way and that the
        results would be made public in the autumn.

        The app is free for up to 200 pages a month, with a subscription of 4 euros a month for unlimited
        use. The company, which was funded by two private investors and a regional innovation grant, says
        it needs about 30,000 paying subscribers to break even.

        Margin is available now for tablets, with a phone version planned for next year. Varga said the
        team's next priority was support for scripts written from right to left, which several schools in
        the region had requested.
        """),
        "Harlow Cross start-up Quillfeather has launched Margin, a note-taking app that recognises "
        "handwriting on the user's own device instead of on remote servers. Reviewers praised its speed "
        "but not its handling of diagrams, privacy advocates want an independent audit of its encrypted "
        "cloud backups, which the company says is under way, and it needs about 30,000 subscribers to "
        "break even.",
    ),
    (
        text("""
        A fifteenth-century map of the Corvale coastline has gone back on display at the town museum after
        three years of restoration, revealing details that had been hidden under layers of varnish for at
        least two centuries.

        The map, drawn on four sheets of parchment stitched together, shows the coast from the mouth of the
        River Sable to the headland at Penmarrow. It was donated to the museum in 1922 by the family of a
        local shipowner, but by the early 2000s the varnish applied during an earlier repair had turned
        dark brown, making much of the lettering unreadable.

        Conservator Beatriz Mendes and her team removed the varnish using small swabs and a gel solvent,
        working on areas no larger than a postage stamp at a time. Under the varnish they found the names
        of three settlements that no longer exist, as well as a small drawing of a lighthouse at a point
        where historians had believed there was none before the eighteenth century.

        "We had to stop several times to consult historians, because each discovery changed our
        understanding of what we were looking at," Mendes said. The team also used infrared imaging to
        read notes written in the margins, which appear to record water depths near the harbour entrance.

        The restoration cost about 180,000 euros, most of which came from a national heritage fund and a
        public appeal that raised 42,000 euros from more than 3,000 donors. Museum director Olaf Brandt
        said the response to the appeal had surprised staff. "People here feel the map belongs to them,"
        he said.

        The map will be displayed in a new case with controlled humidity and low lighting, and a digital
        copy has been made available online so that researchers elsewhere can study it. Historians from two
        universities have already asked for access to examine the lighthouse drawing in more detail.
        """),
        "After three years of restoration, Corvale's fifteenth-century coastal map is back on display. "
        "Removing darkened varnish revealed three vanished settlements, margin notes on water depths and a "
        "lighthouse drawing that predates what historians believed; the 180,000-euro work was funded "
        "mainly by a heritage fund and a public appeal, and a digital copy is now online.",
    ),
    (
        text("""
        Hollins & Daughter, a chain of fourteen bakeries in the north of the county, says it will make a
        four-day working week permanent after a six-month trial in which sales rose and staff absences
        fell.

        Under the trial, which began in January, bakers and shop staff worked four days a week for the
        same pay as before. Shops stayed open six days a week, with rotas rearranged so that each branch
        had enough people on every shift. The company hired nine additional part-time staff to cover the
        busiest mornings.

        According to figures released by the company, sick days fell by 38 per cent compared with the same
        period last year, and the number of employees leaving dropped from eleven to two. Sales grew by
        six per cent, although managing director Ruth Hollins admitted that some of that increase came from
        new products launched in the spring.

        Staff interviewed at the Market Street branch were mostly enthusiastic. Baker Jonas Pike, who
        starts work at four in the morning, said the extra day off had changed his life. "I see my kids
        properly now. Before, I spent my one free day asleep," he said. Others were more measured: one
        shop assistant said the longer shifts on working days left her tired by the end of the week.

        The trial was not without difficulties. Two branches struggled to cover shifts in February when
        several staff caught flu at the same time, and the company had to close one shop early on three
        occasions. Hollins said the company had since built a small pool of relief staff who can move
        between branches.

        Labour economists say results from a single small business should be treated with care. The
        company chose when to run the trial and how to measure it, and a period of rising sales may have
        made the change easier to absorb. Still, Hollins said she had no plans to go back. "We compete with
        supermarkets on quality, and quality depends on people who are rested," she said.
        """),
        "Bakery chain Hollins & Daughter will keep a four-day week at full pay after a six-month trial in "
        "which sick days fell by 38 per cent, staff departures dropped from eleven to two and sales rose "
        "six per cent. Staff were mostly positive despite longer shifts and some winter staffing problems, "
        "and economists caution that one company's self-measured trial proves little on its own.",
    ),
    (
        text("""
        A group of amateur cavers has discovered a cave system beneath the Tarn Hills that could be more
        than four kilometres long, which would make it one of the longest known in the region.

        The five members of the Kettlewell Caving Club found the entrance last October while following a
        stream that disappears into the hillside above the village of Grisby. For months they had noticed
        that the stream vanished during dry weather, suggesting that water was draining into open passages
        below. After clearing rocks and mud from a narrow crack, they squeezed through into a chamber
        about the size of a small church.

        Since then the team has made fourteen trips underground, mapping passages with a laser measuring
        device and a tablet. The system includes a waterfall about eight metres high, an underground lake
        that the club has so far been unable to cross, and several galleries decorated with pale calcite
        formations.

        Club secretary Owen Thwaite said the discovery was the result of patience rather than luck.
        "People have walked past that crack for centuries," he said. "We only went in because we had spent
        two summers watching where the water went."

        Geologists from the regional survey office have visited the cave twice and say it could help
        answer questions about how groundwater moves through the hills, which supply drinking water to
        several towns. They have asked the club to keep the exact location private while they assess how
        fragile the formations are.

        The landowner, a sheep farmer, has agreed to allow access only to experienced cavers with
        permission from the club. A gate will be fitted at the entrance this summer. The club warns that
        the cave floods quickly after heavy rain and is not suitable for casual visitors.

        The next expedition, planned for September, will bring an inflatable boat to cross the lake, beyond
        which the cavers can hear the sound of running water.
        """),
        "Amateur cavers from the Kettlewell Caving Club have found a cave system under the Tarn Hills that "
        "may be over four kilometres long, after noticing where a stream disappeared. It contains a "
        "waterfall, an uncrossed underground lake and calcite formations; geologists are studying it for "
        "what it shows about groundwater, access will be restricted, and a September expedition will try "
        "to cross the lake.",
    ),
    (
        text("""
        Traffic entering central Norrvik fell by 17 per cent in the first month of the city's new
        congestion charge, according to figures published by the transport department on Monday.

        Since the start of last month, drivers have paid 6 euros to enter the central zone between 7 a.m.
        and 7 p.m. on weekdays. Residents of the zone receive a 90 per cent discount, and vehicles used by
        disabled people, buses and taxis are exempt. Cameras at 32 entry points read number plates, and
        drivers have until midnight the following day to pay.

        The department said average bus journey times across the centre had improved by about four
        minutes, and that passenger numbers on the busiest routes had risen by 9 per cent. Cycling counts
        on the main bridges also increased, although officials noted that an unusually mild month may have
        played a part.

        Shopkeepers are divided. The city centre traders' association said the number of shoppers had
        dropped in the first two weeks, particularly at stores selling bulky goods such as furniture and
        electrical appliances. Some cafés and restaurants, on the other hand, reported busier lunchtimes,
        which they put down to quieter streets and more outdoor seating.

        The charge raised 4.1 million euros in its first month after the costs of running the camera
        system. By law, the money must be spent on public transport and on walking and cycling routes. The
        council has promised that the first projects will include more frequent night buses and safer
        crossings near schools.

        Opposition councillors argue that the charge falls hardest on workers who commute from suburbs
        poorly served by public transport, and they have called for a discount for low-income drivers.
        Deputy mayor Lars Ekdahl said the council would publish a full assessment after six months,
        including the effect on air quality, before considering any change to the price or the hours.
        """),
        "In the first month of Norrvik's 6-euro weekday congestion charge, traffic into the centre fell 17 "
        "per cent, buses got faster and busier, and the charge raised 4.1 million euros that must go to "
        "public transport, walking and cycling. Shops selling bulky goods reported fewer customers while "
        "cafés did better, opposition councillors want a discount for low-income drivers, and a full "
        "review will follow after six months.",
    ),
]


# ---------------------------------------------------------------------------------------------
# Question answering: short open-domain questions. (question, short answer)

QA = [
    ("What is the chemical symbol for gold?", "Au"),
    ("How many sides does a hexagon have?", "Six"),
    ("Which organ in the human body produces insulin?", "The pancreas"),
    ("What is the largest ocean on Earth?", "The Pacific Ocean"),
    ("In which country is the city of Marrakesh?", "Morocco"),
    ("Who wrote the novel Pride and Prejudice?", "Jane Austen"),
    ("what is the freezing point of water in fahrenheit", "32 °F"),
    ("Which gas makes up most of the Earth's atmosphere?", "Nitrogen"),
    ("What is the capital city of Canada?", "Ottawa"),
    ("who painted the ceiling of the sistine chapel", "Michelangelo"),
    ("How many bones are there in an adult human body?", "206"),
    ("Which metal is a liquid at room temperature?", "Mercury"),
    ("what year did the berlin wall fall", "1989"),
    ("What is the longest river in Africa?", "The Nile"),
]


# ---------------------------------------------------------------------------------------------
# Mathematical reasoning: grade-school word problems. (problem, worked solution ending "#### answer")

MATH_REASONING = [
    (
        "Priya runs a lemonade stand. She sells small cups for $2 and large cups for $3. On Saturday she "
        "sold 18 small cups and 12 large cups. The lemons, sugar and cups cost her $19. How much profit did "
        "she make on Saturday?",
        "Small cups earned 18 * 2 = $36.\nLarge cups earned 12 * 3 = $36.\nShe took in 36 + 36 = $72.\n"
        "Her profit was 72 - 19 = $53.\n#### 53",
    ),
    (
        "A school bus has 12 rows of seats, and each row seats 4 people. On a field trip, 3 rows on every "
        "bus are kept for teachers and the other rows are for children. If 130 children are going on the "
        "trip, how many buses are needed?",
        "Each bus has 12 - 3 = 9 rows for children.\nSo each bus carries 9 * 4 = 36 children.\n"
        "Three buses carry 3 * 36 = 108 children, which is fewer than 130, so a fourth bus is needed.\n"
        "#### 4",
    ),
    (
        "Tomas reads 24 pages of his book on every weekday and 40 pages on each day of the weekend. His "
        "book has 416 pages. How many pages will he still have left to read after two full weeks?",
        "On weekdays he reads 5 * 24 = 120 pages a week.\nAt the weekend he reads 2 * 40 = 80 pages.\n"
        "So he reads 120 + 80 = 200 pages a week, and 2 * 200 = 400 pages in two weeks.\n"
        "He has 416 - 400 = 16 pages left.\n#### 16",
    ),
    (
        "A garden centre buys tulip bulbs in packs of 25 for $6 a pack and sells them one at a time for 40 "
        "cents each. It buys 8 packs and sells all but 15 of the bulbs. How much profit does it make?",
        "It buys 8 * 25 = 200 bulbs for 8 * 6 = $48.\nIt sells 200 - 15 = 185 bulbs.\n"
        "It earns 185 * 0.40 = $74.\nIts profit is 74 - 48 = $26.\n#### 26",
    ),
    (
        "Marta's phone plan costs $15 a month plus 5 cents for every text message over 300 in that month. "
        "In March she sent 500 messages. In April she sent 20% fewer messages than in March. How much did "
        "she pay in total for the two months?",
        "In March she sent 500 - 300 = 200 extra messages, costing 200 * 0.05 = $10, so she paid 15 + 10 "
        "= $25.\nIn April she sent 500 - 0.20 * 500 = 400 messages, so 400 - 300 = 100 extra, costing "
        "100 * 0.05 = $5, so she paid 15 + 5 = $20.\nIn total she paid 25 + 20 = $45.\n#### 45",
    ),
    (
        "A baker makes 3 batches of muffins with 24 muffins in each batch. She gives a third of all the "
        "muffins to the school fair and sells the rest in boxes of 6. How many boxes does she fill?",
        "She makes 3 * 24 = 72 muffins.\nShe gives away 72 / 3 = 24 muffins.\nShe has 72 - 24 = 48 left.\n"
        "That fills 48 / 6 = 8 boxes.\n#### 8",
    ),
    (
        "Leo is saving for a bicycle that costs $240. He already has $56 and earns $12 each week by walking "
        "his neighbour's dog. His aunt has promised to give him $20 as soon as his savings reach half the "
        "price of the bicycle. After how many weeks of dog walking can Leo buy the bicycle?",
        "Half the price is 240 / 2 = $120.\nAfter 5 weeks he has 56 + 5 * 12 = $116, and after 6 weeks "
        "56 + 6 * 12 = $128, so his aunt adds $20 after week 6, giving 128 + 20 = $148.\n"
        "He still needs 240 - 148 = $92, which takes 92 / 12 = 7.67, so 8 more weeks.\n"
        "After 6 + 8 = 14 weeks he has 148 + 8 * 12 = $244, enough for the bicycle (after 13 weeks he "
        "would have only $232).\n#### 14",
    ),
    (
        "A train leaves Ashby at 9:15 in the morning and travels at 80 km per hour to Carrow, which is "
        "200 km away. It waits in Carrow for 20 minutes and then returns to Ashby at 100 km per hour. At "
        "what time does it arrive back in Ashby?",
        "The outward trip takes 200 / 80 = 2.5 hours, so it reaches Carrow at 11:45.\n"
        "After waiting 20 minutes it leaves at 12:05.\nThe return trip takes 200 / 100 = 2 hours.\n"
        "It arrives back in Ashby at 14:05, which is 2:05 in the afternoon.\n#### 14:05",
    ),
    (
        "In a class of 30 students, 40% walk to school. One third of the remaining students come by bus, "
        "and everyone else cycles. How many students cycle to school?",
        "0.40 * 30 = 12 students walk.\nThat leaves 30 - 12 = 18 students.\n18 / 3 = 6 come by bus.\n"
        "So 18 - 6 = 12 students cycle.\n#### 12",
    ),
    (
        "A rainwater tank holds 1,200 litres and is three quarters full. A family uses 85 litres of water "
        "from it every day, and on two days in the week a storm adds 40 litres each time. How many litres "
        "are in the tank at the end of the week?",
        "The tank starts with 1200 * 3 / 4 = 900 litres.\nIn a week the family uses 7 * 85 = 595 litres.\n"
        "The storms add 2 * 40 = 80 litres.\nAt the end of the week there are 900 - 595 + 80 = 385 litres.\n"
        "#### 385",
    ),
    (
        "Grace buys 3 notebooks at $2.50 each and 2 identical pens. She pays with a $20 note and gets $9.70 "
        "in change. How much does one pen cost?",
        "She spent 20 - 9.70 = $10.30.\nThe notebooks cost 3 * 2.50 = $7.50.\n"
        "The two pens cost 10.30 - 7.50 = $2.80.\nOne pen costs 2.80 / 2 = $1.40.\n#### 1.40",
    ),
]


# ---------------------------------------------------------------------------------------------
# Retrieval-augmented generation: retrieved passages (250+ words), then the question on the last
# line. (passages, question, reference answer)

RAG = [
    (
        [
            """The clock tower on Wrenfield's market square was completed in 1868 to mark the opening of the
            town's railway station. It was designed by the architect Harold Vance, who also designed the
            corn exchange on the opposite side of the square. The original clock mechanism was made by a
            workshop in the county town and paid for by public subscription, with more than four hundred
            residents contributing sums ranging from a few pennies to several pounds. The tower is built of
            local sandstone and stands just over twenty-six metres tall, with a viewing gallery below the
            clock faces that was open to the public until 1931.""",
            """Wrenfield's market square has hosted a weekly market since at least the fourteenth century,
            when the town received a royal charter allowing traders to sell cloth and livestock every
            Thursday. The corn exchange, completed in 1864, was used for grain trading until the 1950s and
            now serves as a concert hall and cinema. In 1998 the square was closed to through traffic and
            repaved with granite setts, and the Thursday market was joined by a farmers' market on the
            second Sunday of each month.""",
            """By the early twentieth century the first mechanism had become unreliable, often running
            several minutes slow in cold weather. In 1907 it was replaced with a new mechanism fitted with
            an electric winding system, one of the first in the region. The cost was met entirely by Agnes
            Thorley, the widow of a local mill owner, who asked only that a small brass plaque recording her
            late husband's name be fixed inside the door of the tower. The plaque is still there today,
            although the electric winding system itself was replaced in 1974.""",
            """The tower was closed to visitors in 1931 after a section of the gallery railing was found to
            be corroded. Several campaigns to reopen it were launched over the following decades, but it was
            not until 2016 that the town council, with support from the Wrenfield Civic Society, restored
            the gallery and began offering guided tours on the first Saturday of each month. Tours are
            limited to eight people because of the narrow staircase, which has 112 steps. The civic society
            also maintains a small exhibition about the tower's history in the ground-floor room.""",
        ],
        "Who paid for the clock mechanism that was installed in the Wrenfield tower in 1907?",
        "Agnes Thorley, the widow of a local mill owner.",
    ),
    (
        [
            """Brinemouth grew from a small fishing village into a busy port in the second half of the
            nineteenth century. At its peak, around 1900, more than eighty boats were based in the harbour,
            landing mainly herring and mackerel. The arrival of the railway allowed fish to reach inland
            markets within a day, and a row of smoking houses was built along the quay. Only a handful of
            fishing boats work from the harbour today, and most of the smoking houses have been converted
            into holiday flats.""",
            """The Saltmarsh Railway opened in 1884 as a single-track line linking the market town of Eldham
            with the fishing port of Brinemouth, a distance of about nineteen kilometres. It was built mainly
            to carry fish inland, and for its first twenty years most of its income came from freight rather
            than passengers. The company owned three locomotives and eleven carriages, and its workshops were
            at Eldham, where the old engine shed now houses a cycle hire business.""",
            """In 1911 the line was extended eight kilometres north to Coldharbour. The extension was built
            after the discovery of a large deposit of high-quality clay near Coldharbour, which a brick
            company wanted to transport to towns along the main line. The brick company paid for almost half
            of the construction, and in return it was given reduced freight rates for fifteen years.
            Passenger trains to Coldharbour ran only three times a day, and the station there was little
            more than a wooden platform.""",
            """Traffic on the Saltmarsh Railway declined after the Second World War as lorries took over
            much of the fish trade. The Coldharbour extension closed in 1953 when the clay pits were
            exhausted, and the rest of the line closed to passengers in 1964. Part of the route between
            Eldham and Brinemouth was later turned into a footpath and cycle track. In 2002 a group of
            volunteers relaid about two kilometres of track near Brinemouth and now runs heritage trains on
            summer weekends, using a restored tank engine bought from an industrial line in the north.""",
        ],
        "Why was the Saltmarsh Railway extended to Coldharbour in 1911?",
        "To carry clay from a large, newly discovered deposit of high-quality clay near Coldharbour for a "
        "brick company, which paid for almost half of the extension.",
    ),
    (
        [
            """Velmira is a white grape variety grown mainly in the hill vineyards around the town of
            Castelverde. It produces wines with a pale straw colour, aromas of pear and almond, and a
            noticeably high acidity that allows some of them to age for a decade or more. Growers describe
            it as a difficult variety: its thin skins make it prone to rot in wet autumns, and its yields
            vary greatly from year to year.""",
            """The vineyards around Castelverde sit on three main soil types. On the limestone slopes to the
            south, Velmira ripens slowly and gives wines with the highest acidity, which are often used for
            sparkling wine. The clay soils of the valley floor hold more water and give larger, heavier
            bunches, but growers there must thin the leaves carefully to prevent rot. On the volcanic soils
            of the eastern ridge, which are dark and warm up quickly in spring, Velmira ripens earliest,
            usually about ten days before the vineyards on limestone, and produces the richest wines of the
            area.""",
            """Velmira almost disappeared in the 1960s, when many growers replaced it with more productive
            varieties. By 1975 fewer than forty hectares remained. Its revival began in the 1990s, when a
            cooperative of young growers started bottling single-vineyard wines and entering them in
            international competitions. Today around 600 hectares are planted, and a local association runs
            a nursery that supplies certified vines. A festival celebrating the harvest is held in
            Castelverde on the last weekend of September.""",
            """Castelverde is a hill town of about 9,000 inhabitants, known for its medieval walls and its
            Thursday market. Besides wine, the surrounding countryside produces olive oil, chestnuts and a
            sheep's cheese aged in caves beneath the old town. Since 2008 the town has hosted a wine school
            that offers short courses in tasting and vineyard management, attracting students from several
            countries each summer.""",
        ],
        "On which type of soil does the Velmira grape ripen earliest?",
        "On the volcanic soils of the eastern ridge, about ten days before the limestone vineyards.",
    ),
    (
        [
            """The Tessar Islands lie about 60 kilometres off the mainland coast. The largest island, Oster,
            has a population of around 30,000 and is home to the islands' only hospital and secondary
            school. The economy is based on fishing, sheep farming and, increasingly, tourism, which has
            grown since a regular ferry service began in 1986. Winters are mild but very windy, and ferry
            crossings are often cancelled between December and February.""",
            """Tessaric is spoken by around 45,000 people on the Tessar Islands, a chain of five inhabited
            islands. Most speakers are bilingual and use the national language at work and at school, but
            Tessaric remains the main language of many homes and of the islands' fishing communities. The
            first dictionary of the language was compiled in 1879 by a schoolteacher, Matthias Ruhe, who
            spent eleven years collecting words from fishermen and farmers.""",
            """Tessaric grammar is known for its noun system. Nouns change their endings according to their
            role in the sentence, and the language has six grammatical cases: nominative, accusative,
            genitive, dative, locative and an instrumental case used for tools and means of transport.
            Linguists have noted that older speakers on the smallest island, Vell, also use a seventh form,
            a vocative for addressing people directly, but this has disappeared from the speech of younger
            people and is not taught in schools. Verbs agree with the subject and, in some tenses, also with
            the object.""",
            """Since 1998 Tessaric has been taught as a subject in all primary schools on the islands, and a
            weekly television programme in the language began broadcasting in 2010. A spelling reform in
            2004 replaced several letters borrowed from older writing traditions with simpler forms, although
            some publishers continue to use the old spelling. Surveys suggest that the number of children
            who speak Tessaric at home has stabilised over the past fifteen years after decades of
            decline.""",
        ],
        "How many grammatical cases does Tessaric have in the standard language taught in schools?",
        "Six: nominative, accusative, genitive, dative, locative and instrumental (the vocative used by "
        "older speakers on Vell is not taught).",
    ),
    (
        [
            """Orrin Instruments was founded in 1952 by the brothers Walter and Emil Orrin in a rented
            workshop in the town of Fenwick. The company's first products were precision pressure gauges for
            steam boilers, which it sold mainly to textile mills and breweries. By 1960 it employed sixty
            people and had moved to a purpose-built factory on the edge of town.""",
            """As steam boilers were gradually replaced in the 1960s, demand for the company's gauges fell.
            Walter Orrin, an amateur meteorologist, persuaded his brother that the firm's skill in measuring
            pressure could be applied to barometers and, later, to complete automatic weather stations. The
            first Orrin weather station, the model WS-1, was installed at a coastal airfield in 1968. Within
            ten years weather stations made up more than two-thirds of the company's sales, and its
            instruments were in use on ships, farms and mountain huts across the continent.""",
            """Today Orrin Instruments is owned by an international engineering group, though it still
            operates from Fenwick and employs about 340 people. Its current range includes solar-powered
            weather stations for remote sites, sensors for measuring soil moisture, and software that allows
            farmers to combine weather data with information about their crops. The original workshop
            building is now a small museum, open on weekday afternoons, which displays early gauges and the
            WS-1 prototype.""",
            """Fenwick is a market town on the River Aldle with a population of about 22,000. Its growth in
            the nineteenth century was driven by textile mills powered first by water and later by steam,
            several of which have been converted into flats and offices. Other large employers in the town
            today include a food processing plant, the district hospital and a college of further education
            that specialises in engineering.""",
        ],
        "What did Orrin Instruments make before it started producing weather stations?",
        "Precision pressure gauges for steam boilers, sold mainly to textile mills and breweries, and then "
        "barometers.",
    ),
    (
        [
            """The Night of Lanterns is a three-day festival held every year in the riverside town of Kesh
            at the end of the rice harvest. Its origins are uncertain, but a town record from 1731 mentions
            payments for candles and paper "for the lanterns of the harvest night", which suggests that the
            celebration is at least three centuries old. Today it attracts around 20,000 visitors, several
            times the population of the town.""",
            """Kesh lies on the east bank of the River Taan, about forty kilometres upstream from the coast.
            Its old town, with narrow lanes and wooden houses built on stilts, was declared a protected area
            in 2001. Rice farming remains the main occupation in the surrounding villages, and the harvest
            usually ends in late October. The town's stone bridge, built in 1840, is the only crossing of
            the river for twenty kilometres in either direction.""",
            """On the first day, families clean and decorate their houses and hang small paper lanterns over
            their doors. The second day is given over to a market and to a procession in which children
            carry lanterns shaped like animals through the old town. The festival reaches its climax on the
            third evening, when thousands of floating lanterns, each carrying a candle and often a written
            wish, are placed on the river at sunset and allowed to drift downstream past the old stone
            bridge. In earlier centuries lanterns were released into the sky, but this was banned in 1994
            after several fires in nearby fields.""",
            """Organisers now ask visitors to use lanterns made from rice paper and bamboo, which break down
            in the water, and volunteers collect the remains from nets placed two kilometres downstream.
            Accommodation in Kesh is limited, and most visitors stay in the nearby city of Orvane, from which
            special buses run every twenty minutes during the festival. Visitors are advised to arrive early
            on the final day, as the riverbank paths close to traffic from four in the afternoon.""",
        ],
        "On which day of the festival are lanterns put on the river, and why are they no longer released "
        "into the sky?",
        "On the third and final evening, at sunset; sky lanterns were banned in 1994 after they caused "
        "several fires in nearby fields.",
    ),
    (
        [
            """The Darrow Mountains form a range about 180 kilometres long, whose highest peak, Mount Serran,
            reaches 2,950 metres. The lower slopes are covered with beech and oak, giving way to pine forest
            above about 1,100 metres and to alpine meadows above the tree line. The range is home to more
            than 140 bird species, several of them found nowhere else in the region, and a large part of it
            has been protected as a national park since 1978.""",
            """The ash-crowned finch is a small songbird found in the pine forests of the Darrow Mountains at
            altitudes between 1,200 and 2,400 metres. Adults are about fourteen centimetres long, with
            olive-brown backs, yellow bellies and a distinctive grey cap, which gives the species its name.
            Males and females look alike, although males have a slightly brighter yellow breast during the
            breeding season.""",
            """During spring and summer the ash-crowned finch feeds mainly on insects, especially
            caterpillars and small beetles, which it picks from pine needles and bark. Nestlings are fed
            almost entirely on caterpillars. As the insects disappear in autumn, the birds switch to a diet
            of pine seeds, which they extract from cones with their strong, slightly crossed bills. In winter
            they also visit patches of juniper to eat the berries, and flocks of up to fifty birds may gather
            wherever the cone crop is heavy.""",
            """The species is not considered threatened, but researchers have recorded a decline of about
            twenty per cent at lower altitudes since 1990. One possible explanation is that warmer springs
            cause caterpillars to emerge earlier, before the finches' eggs have hatched. Another is the loss
            of old pines to logging and storms. A monitoring programme run by volunteers counts singing males
            along fixed routes every June, and nest boxes have been put up in several valleys to study
            breeding success.""",
        ],
        "What does the ash-crowned finch eat in winter?",
        "Pine seeds, which it extracts from cones, and juniper berries.",
    ),
    (
        [
            """The Halloran Bridge carries road traffic across the River Dun in the centre of Dunmore. The
            first bridge on the site, a timber structure, was built in 1820 and replaced in 1891 by an iron
            bridge designed by the engineer Thomas Keel. Keel's bridge had three spans supported by two stone
            piers and was widely admired for its decorative railings, sections of which are now displayed in
            the city museum.""",
            """On the night of 9 February 1962, during an exceptional flood, one of the stone piers of Keel's
            bridge was undermined by the current and the central span collapsed into the river. Because the
            bridge had been closed to traffic a few hours earlier on the advice of the harbour master, no one
            was injured. The city council asked the engineer Margaret Osei to design a replacement. Her
            design, completed in 1966, used a single concrete arch with no piers in the river, removing the
            weakness that had caused the collapse.""",
            """Osei's bridge was renamed the Halloran Bridge in 1990 in honour of Peter Halloran, the harbour
            master whose warning had prevented casualties in 1962. The bridge was widened in 2008 to add a
            separate cycle lane, a project led by the firm Brennan & Cole. Today about 28,000 vehicles cross
            it each day. A plaque at the northern end tells the history of the crossing and includes a
            drawing of Keel's iron bridge.""",
            """Dunmore grew up at the lowest point where the River Dun could be forded, and for centuries the
            river crossing was the reason for the town's importance. The river is tidal as far as the city
            centre, and the difference between high and low water can exceed five metres. A flood barrier
            downstream of the city was completed in 1984, and since then no major flooding has been recorded
            in the centre.""",
        ],
        "Which engineer designed the bridge that replaced the one that collapsed in 1962?",
        "Margaret Osei.",
    ),
    (
        [
            """Harrow is a strategy board game for two to four players, first published in 1987. Each player
            controls a small kingdom represented by a keep, four villages and a supply of soldiers. The board
            is made of hexagonal tiles that are laid out at random at the start of each game, so no two games
            begin with the same map.""",
            """Players score points in several ways. Each village a player controls at the end of the game is
            worth 2 points, and each village captured from another player during the game earns an extra
            point immediately. Capturing an opponent's keep is worth 5 points, and the player whose keep is
            captured loses 3 points but stays in the game, moving their capital to one of their remaining
            villages. A player who controls all four river tiles at any moment receives a one-time bonus of
            4 points.""",
            """The game ends when one player reaches 30 points or after twelve rounds, whichever comes first.
            In the revised edition of 2005, the designers reduced the keep bonus from 6 to 5 points because
            tournament players found that early attacks on keeps were too strong. The revised edition also
            introduced a rule that a keep cannot be attacked during the first two rounds. Harrow has an
            active tournament scene, and a national championship has been held every spring since 1994.""",
            """Harrow was designed by Ilse Brandauer, a former secondary school mathematics teacher, who said
            she wanted to create a game that rewarded planning more than luck. The first edition was printed
            in a run of only 3,000 copies and sold mainly through hobby shops. The game's popularity grew
            after it won a national game of the year award in 1989, and it has since been translated into
            fourteen languages. A digital version for tablets was released in 2016.""",
        ],
        "In the revised edition of Harrow, how many points does a player earn for capturing an opponent's "
        "keep, and what happens to the player who loses it?",
        "5 points. The player who loses the keep loses 3 points but stays in the game, moving their capital "
        "to one of their remaining villages.",
    ),
    (
        [
            """Riverside Family Clinic is at 14 Tanner Street, next to the public library. The clinic offers
            general practice appointments, vaccinations, blood tests and a weekly child health session.
            Appointments can be booked by phone, online or in person at reception. Patients who are not
            registered with the clinic can be seen for urgent problems, but they will be asked to bring
            identification and the details of their regular doctor.""",
            """Opening hours: Monday to Friday, 8:00 to 18:30, with a late surgery until 20:00 on Wednesdays
            for pre-booked appointments only. Saturday, 9:00 to 12:00, for pre-booked appointments and the
            walk-in service. The walk-in service runs on weekdays from 8:00 to 10:30 and on Saturdays for the
            whole of the morning session; patients are seen in order of arrival, except where a nurse decides
            that a case is urgent. The clinic is closed on Sundays and public holidays, when patients should
            call the regional out-of-hours line.""",
            """Blood tests are taken only on weekday mornings between 8:00 and 11:00, because samples must
            reach the hospital laboratory the same day. Patients who need a fasting blood test should not
            eat for twelve hours beforehand but may drink water. The child health session takes place every
            Tuesday from 14:00 to 16:00 and does not need an appointment. Parking is available behind the
            library, and the clinic is a five-minute walk from the Tanner Street bus stop.""",
            """The regional out-of-hours line is staffed by nurses and doctors every evening from 18:30 and
            all day at weekends and on public holidays. Callers are assessed over the phone and may be given
            advice, a call back from a doctor, or an appointment at one of three out-of-hours centres in the
            region. In a life-threatening emergency, patients should always call the emergency number
            instead.""",
        ],
        "I am not registered at Riverside Family Clinic. Can I walk in without an appointment on a Saturday "
        "afternoon?",
        "No. On Saturdays the clinic is open only from 9:00 to 12:00, and the walk-in service runs during "
        "that morning session; in the afternoon it is closed, so the regional out-of-hours line is the "
        "option.",
    ),
]


# ---------------------------------------------------------------------------------------------
# Law analytics: fictional scenarios asking for legal analysis on general principles.

_ANALYSE = (
    "Analyse the following situation under general principles of {area}. Identify the legal issues, the "
    "relevant rules and the arguments on each side, and reach a reasoned conclusion.\n\n"
)

LAW_ANALYTICS = [
    _ANALYSE.format(area="contract law")
    + "Hartwell Electronics runs an online shop. Because of a data-entry error, a television normally sold "
    "for 1,299 euros was listed at 129.90 euros for six hours on a Sunday. Nadia Rahman ordered two of "
    "them and received an automatic email saying: \"Thank you for your order. We have received it and "
    "will process it shortly.\" On Monday morning Hartwell noticed the mistake, cancelled every order "
    "placed at the lower price and refunded the customers. Nadia insists that a contract was formed and "
    "that Hartwell must deliver the televisions at the advertised price.",
    _ANALYSE.format(area="landlord and tenant law")
    + "Jonas rents a flat from Greystone Property Ltd. His written lease says that the landlord is "
    "responsible for \"structural repairs and the heating system\". In November the boiler broke down. "
    "Jonas reported it the same day by email, but after three weeks without heating and without any "
    "reply, he paid a plumber 640 euros to replace a faulty part and deducted that amount from his "
    "December rent. Greystone has now sent Jonas a formal notice claiming that he is in arrears and "
    "threatening to end the tenancy.",
    _ANALYSE.format(area="employment law on restrictive covenants")
    + "Lena worked for two years as a junior baker at Crustwell Bakeries, a regional chain with shops in "
    "four towns. Her employment contract said that for five years after leaving she would not \"work in "
    "any capacity for any business selling bread or pastries within 200 kilometres of any Crustwell "
    "shop\". Lena has resigned and been offered a job as a pastry assistant in a hotel kitchen 30 "
    "kilometres from the nearest Crustwell shop. Crustwell has written to her saying it will seek an "
    "injunction if she accepts. Discuss which interests an employer may legitimately protect and whether "
    "this clause is likely to be enforced.",
    _ANALYSE.format(area="the law of negligence")
    + "At 5.50 pm on a rainy Friday, Mr Obi slipped on a puddle of water near the entrance of the Fairmead "
    "Supermarket and broke his wrist. The supermarket's cleaning log shows that the entrance was last "
    "checked at 3.15 pm. A \"wet floor\" sign was kept behind the customer service desk but had not been "
    "put out that day. CCTV shows that Mr Obi was looking at his phone as he walked in. The supermarket "
    "argues that rain carried in on customers' shoes cannot be avoided and that Mr Obi should have been "
    "paying attention. Address duty, breach, causation, any defences and the likely outcome.",
    _ANALYSE.format(area="copyright law")
    + "Sofia Marin, a professional photographer, posted a photograph of the harbour at sunset on her "
    "public portfolio website. Three months later she discovered that the Blue Anchor Café was using the "
    "photograph as the cover image of its social media page and on its printed menus, with the café's "
    "logo added in one corner. The owner of the café says he found the image through an online search, "
    "assumed it was free to use because it had no watermark, and has offered to credit Sofia by name. "
    "Sofia wants the image taken down and to be paid a licence fee. Consider what remedies may be "
    "available.",
    "Read the following clause from a software licence agreement between Meridian Analytics (the "
    "licensor) and Parkside Logistics (the licensee). Identify every ambiguity or drafting weakness you "
    "can find, explain how each could lead to a dispute, and propose improved wording.\n\n"
    "\"12.3 The Licensee may terminate this Agreement on reasonable notice if the Software fails to "
    "perform substantially in accordance with the Documentation and the Licensor does not fix the problem "
    "promptly. Upon termination the Licensor shall refund the fees paid for the current period, less a "
    "reasonable amount for use, and the Licensee shall return or destroy all copies of the Software and "
    "related materials.\"",
    _ANALYSE.format(area="data protection law")
    + "Pulse Fitness, a chain of gyms, collects its members' names, email addresses, dates of birth and "
    "the results of fitness assessments, including weight and blood pressure. Its membership form has a "
    "pre-ticked box stating that members agree to \"receive offers from carefully selected partners\". "
    "Last month Pulse Fitness shared its full member list, including assessment results, with a company "
    "that sells nutritional supplements, which then emailed members personalised product "
    "recommendations. Several members have complained. Consider the lawful basis for each use of the "
    "data, transparency, consent and the members' rights, and say what the gym should have done "
    "differently.",
    "Below is an extract from a fictional appeal judgment. Summarise the facts, state the legal question "
    "and the court's decision, and explain which parts of the reasoning are essential to the decision and "
    "which are remarks made in passing.\n\n"
    "\"The appellant, a cycle courier, was engaged by the respondent delivery platform under an agreement "
    "describing him as an 'independent partner'. The platform set his delivery fees, assigned his routes "
    "through its app, and deactivated his account when his acceptance rate fell below 85 per cent. He "
    "could in theory send a substitute, but any substitute had to be approved by the platform in advance, "
    "and no substitute had ever been approved. The tribunal below held that he was self-employed because "
    "the agreement said so. In our judgment that approach was wrong. The label the parties choose is not "
    "decisive; the tribunal must examine how the relationship operates in practice. Where one party "
    "controls the price, the allocation of work and the consequences of declining it, and the right of "
    "substitution is illusory, the worker is not in business on his own account. We note in passing that "
    "the platform's customer rating system may raise separate questions of fairness, but those are not "
    "before us. The appeal is allowed and the matter is sent back for the assessment of holiday pay.\"",
    "You are advising Inkwell Books, a small independent bookshop that is about to sign a five-year lease "
    "for a shop unit. The landlord has proposed the clause below. Explain the risks it creates for the "
    "tenant, how a landlord might use it to defeat an attempt to leave early, and what changes the tenant "
    "should ask for.\n\n"
    "\"The Tenant may end this Lease on the third anniversary of the start date by giving not less than "
    "six months' written notice, provided that on the termination date the Tenant has paid all sums due "
    "under this Lease, has complied with all its obligations under this Lease, and gives vacant "
    "possession of the Premises.\"",
    _ANALYSE.format(area="the law of private nuisance")
    + "The roots of a large oak tree growing in Mrs Kaur's garden have spread under the boundary and "
    "cracked the garden wall and the patio of her neighbour, Mr Brennan. Mr Brennan first complained two "
    "years ago, and a surveyor he hired now estimates the repairs at 7,800 euros. Mrs Kaur says the tree "
    "was there long before either of them bought their houses, that it is protected as an important local "
    "tree, and that she cannot be blamed for what roots do underground. Also suggest practical ways the "
    "dispute could be settled without going to court, and the evidence that would matter if it did.",
]


# ---------------------------------------------------------------------------------------------
# Grammar correction. (text with errors, corrected text)

_CORRECT = "Correct the grammar and spelling of the following text, changing as little as possible:\n\n"

GRAMMAR_CORRECTION = [
    (
        "Yesterday me and my brother goes to the market for buying some vegetable, but the most of the "
        "stalls was already close.",
        "Yesterday my brother and I went to the market to buy some vegetables, but most of the stalls were "
        "already closed.",
    ),
    (
        "The report which I have sent you last week contain several mistake that needs to be fix before the "
        "meeting.",
        "The report that I sent you last week contains several mistakes that need to be fixed before the "
        "meeting.",
    ),
    (
        "If I would have known about the traffic, I would of left earlier and arrive on time.",
        "If I had known about the traffic, I would have left earlier and arrived on time.",
    ),
    (
        "Their going to announce the results tomorrow, so everyone are waiting nervous for it.",
        "They're going to announce the results tomorrow, so everyone is waiting nervously for them.",
    ),
    (
        "She don't like when people talks loud in the library, it disturb her concentration.",
        "She doesn't like it when people talk loudly in the library; it disturbs her concentration.",
    ),
    (
        "Each of the students have they're own locker, but less students use them then last year.",
        "Each of the students has their own locker, but fewer students use them than last year.",
    ),
    (
        "We was very exciting to visit the castle, who was built in the twelve century by a local lord.",
        "We were very excited to visit the castle, which was built in the twelfth century by a local lord.",
    ),
    (
        "Despite of the rain, the childrens played outside untill it become dark.",
        "Despite the rain, the children played outside until it became dark.",
    ),
    (
        "Dear Mr Hollis, I am writing for complain about the heater I have buyed from your shop in the last "
        "month. Since the first day it make a loud noise and it stop working after only two week. I would "
        "like that you replace it or give me my money back. I look forward to hear from you.",
        "Dear Mr Hollis, I am writing to complain about the heater I bought from your shop last month. Since "
        "the first day it has made a loud noise, and it stopped working after only two weeks. I would like "
        "you to replace it or give me my money back. I look forward to hearing from you.",
    ),
    (
        "The team have finished the project ahead of schedule, however the client were not satisfy with the "
        "design and asked for alot of changes.",
        "The team has finished the project ahead of schedule; however, the client was not satisfied with "
        "the design and asked for a lot of changes.",
    ),
]


def build_questions() -> list[dict]:
    """All bundled questions, in file order, in Spec-Bench's schema."""
    records: list[dict] = []

    def add(subtask: str, index: int, category: str, turns: list[str], reference: list[str] | None) -> None:
        record = {"question_id": FIRST_ID[subtask] + index, "category": category, "turns": turns}
        if reference is not None:
            record["reference"] = reference
        records.append(record)

    for i, (category, first, second, reference) in enumerate(MT_BENCH):
        add("mt_bench", i, category, [first, second], [reference] if reference else None)
    for i, (language, source, english) in enumerate(TRANSLATION):
        add("translation", i, "translation", [f"Translate {language} to English: {source}"], [english])
    for i, (article, summary) in enumerate(SUMMARIZATION):
        add("summarization", i, "summarization", [f"Summarize: {article}"], [summary])
    for i, (question, answer) in enumerate(QA):
        add("qa", i, "qa", [question], [answer])
    for i, (problem, solution) in enumerate(MATH_REASONING):
        add("math_reasoning", i, "math_reasoning", [problem], [solution])
    for i, (passages, question, answer) in enumerate(RAG):
        context = "\n".join(text(passage) for passage in passages)
        add("rag", i, "rag", [f"{context}\n{question}"], [answer])
    for i, prompt in enumerate(LAW_ANALYTICS):
        add("law_analytics", i, "law_analytics", [prompt], None)
    for i, (faulty, corrected) in enumerate(GRAMMAR_CORRECTION):
        add("grammar_correction", i, "grammar_correction", [_CORRECT + faulty], [corrected])
    return records


def render(records: list[dict]) -> str:
    # ensure_ascii=False keeps accented source sentences readable in the file.
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def main() -> None:
    records = build_questions()
    OUTPUT.write_text(render(records), encoding="utf-8")
    print(f"wrote {OUTPUT}: {len(records)} questions")


if __name__ == "__main__":
    main()
