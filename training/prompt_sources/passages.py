"""Long invented documents (200-400 words), each with questions that only the document answers.

LONG: (title, kind, text, [questions]) for summarization and retrieval-augmented prompts.
"""

LONG = [
    ("Harbour Street Bakery annual report", "report", """\
The Harbour Street Bakery closed its fourth year of trading with revenue of 412,000 euros, an
increase of eleven percent on the year before. Bread still makes up the largest share of sales,
about forty-five percent, but the fastest growth came from the catering service that the bakery
started in March, which supplies sandwiches and pastries to three offices and a primary school.
Catering alone brought in 58,000 euros in its first ten months.

Costs rose as well. The price of flour went up by nineteen percent over the year, and the bakery
signed a new electricity contract in September at a higher fixed rate. To protect its margins the
owners, Marta and Joost Verhagen, raised the price of a standard loaf from 3.10 to 3.40 euros in
June. Sales volume of loaves fell by only two percent after the change, which the owners read as
a sign that regular customers value the quality more than the price.

The team grew from seven to ten people. Two of the new staff work in the early shift that starts
at four in the morning, and one is a delivery driver for the catering orders. The bakery bought a
second-hand electric van in April for 21,000 euros, paid for partly with a regional grant for
clean transport that covered a third of the price.

Not everything went well. A failure of the main oven in August forced the shop to close for three
days, and the repair cost 6,500 euros. The owners have since put aside money for a backup oven.
Waste remains a concern: roughly eight percent of baked goods are unsold at the end of the day.
Since November leftovers are sold at half price in the last hour, and what remains goes to a
local food bank.

For the coming year the bakery plans to open on Sundays, add two gluten-free breads, and expand
catering to a fourth office. The owners expect revenue to pass 450,000 euros if the Sunday
opening draws as many customers as a normal Saturday morning.""",
     ["How much did the bakery pay for its van, and how was part of it financed?",
      "Why did the shop close for three days, and what did the owners do afterwards?",
      "What happened to loaf sales after the price increase, and how did the owners interpret it?"]),

    ("Minutes of the Linden Court residents' meeting", "meeting notes", """\
Minutes of the residents' meeting of Linden Court, held on Tuesday evening in the ground-floor
common room. Present: eighteen residents, the building manager Mr. Osei, and Ms. Laine from the
housing association. The meeting was chaired by Priya Raman.

1. Lift repairs. Mr. Osei reported that the east lift has broken down four times since January.
The housing association has approved a full replacement of its motor and control panel. Work
will start on the fourteenth of next month and take about three weeks. During that time only the
west lift will run. Residents with reduced mobility on the upper floors may ask for help with
shopping deliveries; a sign-up list will hang in the entrance hall.

2. Bicycle storage. Several residents complained that the bicycle room is full of abandoned
bicycles. It was agreed that every bicycle still in use will get a coloured tag before the end of
the month. Untagged bicycles will be moved to a locked store and given to a charity after sixty
days if nobody claims them.

3. Garden. The garden group, led by Tomasz Nowak, proposed turning the unused strip behind
block B into vegetable beds. Ms. Laine said the association would pay for the soil and timber,
up to 800 euros, if at least ten households commit to looking after the beds. Twelve households
signed up during the meeting.

4. Noise. Two residents raised late-night noise from the courtyard in summer. After discussion
the meeting agreed to ask for a sign reminding people that the courtyard is quiet after ten in
the evening, rather than locking it, which most residents opposed.

5. Any other business. Ms. Laine announced that the annual service charge will rise by four
percent because of higher insurance costs. Several residents asked for a written breakdown of
the charge, which she promised to send within two weeks.

The next meeting will take place in three months. The chair thanked everyone for coming.""",
     ["How long will the east lift be out of service, and what help is offered in the meantime?",
      "Under what condition will the housing association pay for the vegetable beds, and was it met?",
      "What did the meeting decide about the courtyard noise, and what option was rejected?"]),

    ("User guide for the Brisa 300 air purifier", "product manual", """\
Thank you for choosing the Brisa 300 air purifier. This guide explains how to set up, use and
maintain the device. Please read it before first use.

Setting up. Remove the purifier from its box and take off all plastic wrapping, including the
bag around the filter inside the back cover. Place the device on a flat, firm surface at least
thirty centimetres from walls and curtains, so that air can flow freely into the intake at the
back. Connect the power cable and press the round button on top. The ring light shows blue while
the device runs its two-minute start-up check.

Modes. The Brisa 300 has three fan speeds and an automatic mode. In automatic mode a sensor
measures fine dust in the room and changes the fan speed on its own. The ring light shows the air
quality: blue for good, yellow for moderate and red for poor. Night mode, chosen by holding the
button for three seconds, turns off the light and keeps the fan at its lowest speed. The purifier
is suitable for rooms of up to thirty square metres.

Filter care. The device uses one combined filter with a pre-filter, a fine particle layer and a
carbon layer against smells. Vacuum the pre-filter gently once a month. The whole filter should
be replaced every six to nine months, depending on use. When the filter indicator on the back
turns orange, order a new filter; when it turns red, replace it at once. After fitting a new
filter, hold the button and the small reset key together for five seconds to reset the counter.
Never wash the filter with water, because this destroys the fine layer.

Safety. Do not use the purifier in a bathroom or near open flames. Do not cover the air outlet on
top, and keep small objects away from the intake. Unplug the device before you open the back
cover. If the device makes a loud rattling noise, switch it off and contact customer service.

Warranty. The Brisa 300 comes with a two-year warranty that covers faults in materials and
workmanship. The warranty does not cover filters or damage caused by ignoring this guide.""",
     ["How do I reset the filter counter after changing the filter?",
      "What does the colour of the ring light mean in automatic mode?",
      "Can I wash the filter, and what is not covered by the warranty?"]),

    ("The history of the town of Velmora", "fictional history", """\
Velmora began as a ferry crossing on the river Aske in the late twelfth century. A family of
boatmen named Durand held the right to carry travellers and goods across the river, and a small
village of inns and stables grew up around their landing. The name Velmora is thought to come
from an old word for a shallow bend, since the river slows and widens at that point.

In 1342 the local lord granted the village a market charter, allowing a weekly market on
Thursdays and a wool fair every autumn. The fair made Velmora rich. Merchants came from the coast
to buy fleeces from the hill farms, and by 1400 the town had a stone bridge, a guildhall and two
churches. The bridge ended the Durand family's ferry business, but they became wool merchants
themselves and built the tall house that still stands on the market square.

The town suffered badly in the plague of 1361, losing perhaps a third of its people, and again
during the long war of the fifteenth century, when soldiers burned the lower town twice. Each
time the wool trade brought people back. A period of decline came only in the seventeenth
century, when cheaper cloth from abroad ruined the local weavers and the fair shrank to a single
day.

Velmora's second life began in 1851 with the railway. A line from the capital to the coast passed
two kilometres north of the old town, and a new quarter of brick houses, warehouses and a brewery
grew up around the station. The brewery, founded by Agnes Holt, became the largest employer in
the district and remained so for a hundred years.

Today Velmora has about 23,000 inhabitants. The brewery closed in 1978, but its buildings now
house a college of design. The autumn wool fair was revived in 1990 as a festival of crafts and
food, and it draws some forty thousand visitors each year.""",
     ["Why did the Durand family lose their ferry business, and what did they do instead?",
      "What caused Velmora's decline in the seventeenth century?",
      "What happened to the brewery founded by Agnes Holt?"]),

    ("Pilot study on four-day school weeks in Nordhaven", "research report", """\
In the school year just ended, the district of Nordhaven ran a pilot in which six of its
twenty-two primary schools moved to a four-day teaching week. Pupils at the pilot schools attended
from Monday to Thursday, with each school day extended by fifty minutes, so that total teaching
time fell by only about six percent. Fridays were offered as optional activity days run by
volunteers and youth workers, with sport, music and homework clubs.

The district compared the pilot schools with six similar schools that kept the normal timetable.
In reading, the results of the two groups were almost the same at the end of the year. In
mathematics the pilot schools scored slightly lower, by an amount the researchers described as
small but worth watching. Attendance improved at the pilot schools: the share of pupils missing
more than ten days fell from fourteen to nine percent.

Teachers at the pilot schools reported less tiredness and more time for planning, and nine out of
ten wanted the pilot to continue. Recruitment also improved: the pilot schools filled all their
open positions, while the comparison schools still had four vacancies in June.

Parents were more divided. About sixty percent of parents at the pilot schools supported the
change, but working parents of young children often struggled with Fridays. Only about a third of
pupils took part in the Friday activities, and places in the music club ran out within a week.
Families on low incomes were less likely to use the activity days, which the researchers see as
a risk for fairness.

The district spent 310,000 euros on the pilot, most of it on staff for the Friday programme and
on transport. The report recommends continuing the pilot for two more years, adding more Friday
places, and watching mathematics results closely before any decision to extend the four-day week
to all schools.""",
     ["How did attendance change at the pilot schools?",
      "Why are the researchers worried about fairness?",
      "What does the report recommend, and why not an immediate extension to all schools?"]),

    ("Incident report: payment service outage", "technical incident report", """\
Summary. On Saturday between 09:12 and 10:47, customers of the online shop could not complete
payments. About 2,300 orders failed during the incident, and roughly 1,400 of those customers
tried again and succeeded after the service recovered. No card data was exposed.

Timeline. At 09:05 a routine deployment updated the payment service to a new version. The new
version included a change to how database connections are reused. At 09:12 the error rate on the
checkout page rose sharply, and the on-call engineer, Dana Whitfield, was paged at 09:15. Because
the deployment had passed all automated tests, the team first suspected the external card
processor and spent twenty minutes checking its status page and logs. At 09:41 an engineer
noticed that the payment service had opened the maximum number of database connections and was
waiting for free ones. The team rolled back the deployment at 10:20. The rollback itself took
longer than usual because the deployment tool required a manual approval that nobody on duty
could give. Payments recovered fully by 10:47.

Root cause. The new connection code did not return connections to the pool when a payment was
declined by the card processor. Under normal weekday traffic declines are rare, but on Saturday
morning a promotion brought a wave of attempts with expired cards. The pool emptied within
minutes. The automated tests used a mock card processor that never declined payments, so the
fault was not caught.

What went well. Alerts fired within three minutes. Customers saw a clear error message and were
not charged twice.

Actions. First, add tests in which the mock processor declines payments. Second, add an alert
when the connection pool is more than eighty percent full. Third, allow the on-call engineer to
approve emergency rollbacks alone. Fourth, avoid deployments in the hour before a planned
promotion.""",
     ["What was the root cause of the outage, and why did the tests miss it?",
      "Why did the rollback take longer than usual?",
      "How many orders failed, and was any card data exposed?"]),

    ("Field notes from the Tarn Hollow bird survey", "field notes", """\
Survey of Tarn Hollow wetland, third visit of the season. Weather: dry, light wind from the west,
about twelve degrees at dawn, rising to eighteen by noon. Observers: Lena Brandt and Samuel Ode.
We walked the usual route from the car park along the boardwalk to the hide, then around the
north side of the lake, finishing at the reed beds by two in the afternoon.

The most striking change since the last visit is the water level, which has dropped by about
forty centimetres after three weeks without rain. A wide strip of mud is now exposed along the
east shore, and it attracted waders we had not recorded earlier this year: six green sandpipers,
two greenshanks and a single ruff. Herons were busy along the new edge, with eleven counted at
one time.

Ducks were fewer than on the second visit. We counted about ninety mallards, twenty-four teal and
a pair of gadwall, compared with more than two hundred ducks a month ago. We think many have moved
to the reservoir upstream, which stays deeper in dry weather.

The reed beds were noisy with reed warblers and at least three sedge warblers singing. We heard a
water rail calling twice near the old sluice but could not see it. A marsh harrier, probably a
young female judging by the pale crown, hunted over the reeds for twenty minutes.

Problems: the boardwalk near the hide has two broken planks, which are a danger to visitors, and
we saw fresh tyre tracks on the grass by the north gate, where vehicles are not allowed. Both were
reported to the warden by phone.

Next visit planned in two weeks. If the dry weather continues we expect more waders on the mud,
but fewer ducks and possibly problems for the nesting grebes, whose floating nests could be left
on dry ground.""",
     ["Why were there fewer ducks than on the previous visit, according to the observers?",
      "Which new birds appeared on the east shore, and what made that possible?",
      "What problems did the observers report to the warden?"]),

    ("Proposal for a four-stop electric ferry", "project proposal", """\
This proposal asks the city council to fund a two-year trial of a small electric passenger ferry
on the Merrow river. The ferry would link four stops: the central station quay, the new housing
district at Eastfield, the hospital, and the university boathouse. Today a trip from Eastfield to
the hospital takes forty minutes by bus because the route crosses the river by the ring road
bridge. By water the same trip would take about twelve minutes.

The vessel we propose carries up to sixty passengers and twelve bicycles. It runs on batteries
charged at the station quay during a ten-minute stop every hour, using electricity from the
city's own solar farm. A single boat could run every thirty minutes from six in the morning to
ten at night. Two crew members are needed on each shift.

Costs. We estimate that leasing the boat costs 380,000 euros a year, crew and maintenance 520,000,
and building floating pontoons at the three new stops 900,000 as a one-off cost. With a fare of
two euros, the same as a bus ticket, and an expected 1,500 passengers a day, fares would cover
roughly forty percent of the running costs in the first year. We ask the council to cover the
rest and the pontoons from the climate budget.

Benefits. The ferry would cut travel times for hospital staff living in Eastfield, reduce traffic
on the ring road bridge, and give the university a direct link to the centre. The pontoons can be
reused by any later service even if the trial ends.

Risks. The river freezes in some winters, which could stop the service for a few weeks. Flooding
may also close the hospital stop. Passenger numbers are uncertain, since Eastfield is only half
built. We propose a review after twelve months, with clear targets: at least 1,000 passengers a
day and ninety-five percent of trips on time.""",
     ["How much faster would the trip from Eastfield to the hospital be by ferry?",
      "What share of the running costs would fares cover, and who pays the rest?",
      "What targets must the trial meet at the twelve-month review?"]),

    ("Interview with the potter Ines Albuquerque", "magazine article", """\
Ines Albuquerque did not touch clay until she was forty-two. For twenty years she worked as a
tax accountant in Lisbon, and she describes her old self as someone who never made anything she
could hold in her hands. Then a friend gave her a voucher for a weekend pottery course. "I was
terrible," she laughs. "Every bowl collapsed. But I went home and could not stop thinking about
it."

She took evening classes for three years before she left her job. Today she runs a small studio
in a former fish market in the coastal town of Peniche, where she makes plates, cups and large
serving bowls glazed in the greys and greens of the Atlantic. Most of her work is sold to
restaurants, which like the fact that every plate is slightly different.

Her process is slow. The clay comes from a supplier in the north of the country, and she mixes
in sand from the local beach to give the pieces a rough texture. After shaping, each piece dries
for up to two weeks before its first firing. The glazes are her own recipes, which she keeps in a
notebook full of failed experiments. "Maybe one glaze in ten is worth keeping," she says.

The hardest part of the new life, she admits, is money. In her first year she earned less than a
quarter of her old salary, and a broken kiln nearly ended the business. What saved her was a
large order from a hotel group that wanted a thousand plates for its new restaurants. It took her
eight months and the help of two apprentices.

Asked what advice she would give people who want to change careers late, she is careful. "Do not
quit in a hurry. Learn first, keep your savings, and test whether people will pay for what you
make. Passion is not a business plan." Then she smiles. "But do not wait forever either.\"""",
     ["What saved Ines's business after her difficult first year?",
      "How does she give her pieces their rough texture?",
      "What advice does she give to people who want to change careers late in life?"]),

    ("Quarterly update from the Riverbend public library", "newsletter", """\
Dear members, here is what happened at the Riverbend public library over the last three months
and what is coming next.

Visits and loans. The library welcomed 31,400 visits this quarter, up from 27,900 in the same
quarter last year. Loans of printed books rose slightly, while loans of e-books grew by almost a
quarter. The most borrowed title was a cookbook of recipes from the region's grandmothers,
collected by the library's own writing group, which had a waiting list of eighty people.

Opening hours. Thanks to a grant from the province, the library now opens until eight in the
evening on Tuesdays and Thursdays. The extra hours are popular with students: on those evenings
the study room is often full by six o'clock. We are looking at ways to add more desks.

The repair café. Every first Saturday of the month volunteers help visitors fix small
appliances, clothes and bicycles in the library's hall. In three months they repaired 143 items,
from toasters to a child's violin. About one item in five could not be saved, usually because
spare parts were not available.

Building works. The roof above the children's section will be repaired in the coming quarter.
During the works, which should take six weeks, the children's books will move to the first-floor
meeting room. Story hour will continue, but in the hall instead of the usual corner.

Changes to fines. From next month the library stops charging fines for late returns of children's
books. Experience elsewhere shows that fines keep families away more than they bring books back.
Adults will still pay fines, but the maximum per book falls from ten to five euros.

Volunteers wanted. We are looking for people to read aloud to residents of the Elm Tree care home
once a week, and for helpers with computer questions on Wednesday mornings. Ask at the desk.""",
     ["Why is the library stopping fines for children's books?",
      "Where will the children's books go during the roof repair, and for how long?",
      "What was the most borrowed title, and who made it?"]),

    ("Report on the Kestrel Valley water shortage", "government report", """\
This report looks at the water shortage in the Kestrel Valley during the past summer and sets out
measures for the coming years.

What happened. Rainfall between April and August was forty-five percent below the long-term
average. The Upper Kestrel reservoir, which supplies about 120,000 people, fell to thirty-one
percent of its capacity by the end of August, the lowest level since it was built. From the
middle of July the water company banned the use of garden hoses and the filling of private pools.
In four villages at the end of the network, pressure dropped so low in the evenings that some
houses had no water for several hours.

Why it was so severe. The drought itself was the main cause, but two other factors made it worse.
First, leaks: the company estimates that twenty-two percent of the water it treats is lost
through old pipes before it reaches customers. Second, demand has grown, because about 9,000 new
homes were built in the valley over the last decade without any increase in storage.

Measures. The report proposes four groups of measures. One: replace the worst sections of pipe,
about 140 kilometres, over eight years, with the goal of cutting leaks to twelve percent. Two:
fit water meters in all homes; at present only half of households pay by the amount they use.
Three: build a link to the neighbouring Lowmoor network so that water can be shared in an
emergency. Four: require rainwater tanks in all new houses from next year.

Costs and timing. The pipe replacement is the most expensive part, at an estimated 210 million
euros. The Lowmoor link would cost 35 million and could be ready in three years. The report warns
that without these steps, a dry summer like the last one could lead to rationing within five
years, as the population keeps growing.""",
     ["What two factors besides low rainfall made the shortage worse?",
      "How much water is lost through leaks, and what is the target?",
      "What could happen within five years if nothing is done?"]),

    ("Review of the novel 'The Salt Archivist'", "book review", """\
The Salt Archivist, the second novel by the fictional author Ruth Okonkwo-Hale, follows Miriam
Tess, a middle-aged archivist who is sent to catalogue the papers of a salt mining company in a
remote northern town before the company's offices are demolished. What begins as a quiet story
about boxes, index cards and damp basements turns, slowly and very skilfully, into a story about
a town that has decided to forget something.

Miriam finds that the records for one year, 1923, are missing. Nobody in town will talk about
it. The hotel owner changes the subject, the priest suggests she look elsewhere, and the only
person willing to help is Paul, a teenage boy who works in the hotel kitchen and who has his own
reasons for wanting to know. Together they piece the year back together from letters, payslips and
a child's school notebook found behind a radiator.

Okonkwo-Hale writes beautifully about work. The chapters in which Miriam sorts and labels papers
are strangely gripping, and the author trusts the reader to find meaning in small details: a
change in the handwriting of a clerk, a name that disappears from the payroll. The northern town,
with its white dust and grey sea, feels completely real.

The book is not without faults. The middle section is slow, and a subplot about Miriam's
ex-husband adds little. The final revelation, when it comes, is handled with restraint, perhaps
too much: some readers will wish for a stronger ending after such a long build-up.

Still, this is a rare novel that makes the act of remembering itself exciting. It asks who
decides what a community keeps and what it throws away, and it does not pretend the answer is
simple. Readers who enjoyed slow, atmospheric mysteries will find much to admire here.""",
     ["What is the mystery that Miriam discovers, and who helps her?",
      "What faults does the reviewer find in the novel?",
      "What does the reviewer praise most about the author's writing?"]),
]

# Medium-length documents (about 100-160 words), one summary and one question each.
MEDIUM = [
    ("memo on the office move", """\
From next Monday the customer support team moves from the third floor to the renovated space on
the first floor, next to the cafeteria. Movers will pack desks on Friday afternoon, so please
clear personal items from your desk by Friday at noon and label your monitor and chair with the
stickers left in the kitchen. Laptops go home with you for the weekend. The phone system will be
switched over on Saturday; if your extension does not work on Monday morning, call the IT desk on
4400 rather than raising a ticket. The new space has fewer fixed desks, so four desks near the
window will be bookable through the room calendar. Parking does not change. Thank you for your
patience during the move.""",
     "What should staff do with their laptops, and whom should they call if their phone does not work?"),
    ("notice about a clinic's new opening hours", """\
The Westgate Family Clinic will change its opening hours from the first of next month. The clinic
will open at 7:30 instead of 8:00 on weekdays, so that working patients can be seen before their
jobs start, and it will close at 18:00 instead of 19:00. On Saturdays the clinic will now open from
9:00 to 12:00 for urgent appointments only, which must be booked by phone on the same morning.
Blood tests will be taken only between 7:30 and 10:00, because samples must reach the laboratory
before noon. Repeat prescriptions can still be ordered online at any time and collected after two
working days. The clinic apologises to patients who relied on the late evening hours.""",
     "When can blood tests be taken, and why only then?"),
    ("summary of a cycling club's season", """\
The Grey Hills cycling club had its busiest season yet. Membership grew to 146 riders, including
thirty-one women, after the club started a beginners' group on Sunday mornings with shorter routes
and a no-drop rule, which means nobody is left behind. The club organised eleven group rides of
more than a hundred kilometres and its first charity ride, which raised 7,800 euros for a
children's hospice. Two members finished a ride across the Alps in August. Less positively, there
were three crashes on club rides, one of which put a rider in hospital with a broken collarbone.
The committee will run a free session on group riding safety before next season and asks all
members to fit a rear light, even in daylight.""",
     "What is the no-drop rule, and what will the committee do about safety?"),
    ("announcement of a software release", """\
Version 4.2 of the TallyBook accounting app is now available. The biggest change is support for
multiple currencies: invoices can be written in any of thirty currencies, and the app converts
them using daily exchange rates for the reports. Bank import now understands the file formats of
six more banks. The app also starts faster, taking about two seconds instead of five on older
phones. We removed the old PDF export that was replaced last year; users who still need it can
install version 4.1 from the settings page until the end of the year. Because the database format
changed, please make a backup before updating. After the update, version 4.2 cannot open backups
made by later versions, but it reads all older ones.""",
     "Why should users make a backup before updating, and what happened to the old PDF export?"),
    ("letter from a school headteacher", """\
Dear parents, I am writing about the school trip to the coast planned for the last week of May.
The trip is for pupils in years five and six and will last three days, staying at a youth hostel
in Portmere. Pupils will visit a lifeboat station, study rock pools with a marine biologist and
take part in a beach clean-up. The cost is 145 euros per pupil, which covers transport, meals and
activities. Families who find this difficult can ask the school office in confidence for help
from our trip fund; no child will miss the trip because of cost. Please return the consent form
and a first payment of 50 euros by the twentieth of April. A meeting for parents with questions
will be held in the school hall on the twelfth of April at six in the evening.""",
     "What does the trip cost, and what can families do if they cannot afford it?"),
    ("description of a hiking trail", """\
The Ridge Loop is a fourteen-kilometre circular walk that starts at the car park of the Ashdown
visitor centre. The first three kilometres follow a forest road that climbs gently through pine
woods. After the old quarry, the path becomes steep and rocky for about a kilometre until it
reaches the ridge, where walkers are rewarded with views over two valleys. The ridge itself is
exposed and can be dangerous in strong wind or fog, when the path is hard to see. The descent
passes a small mountain hut that sells drinks in summer and returns to the car park along a
stream. Most walkers need five to six hours. Good boots are essential, and dogs must be kept on a
lead because sheep graze on the ridge.""",
     "Which part of the walk is dangerous and when, and why must dogs be on a lead?"),
    ("notes from a product team's planning session", """\
The team agreed that the next quarter will focus on the mobile app's offline mode, which is the
feature customers ask for most. Selin will lead the work and expects a first version in six weeks,
covering reading and editing notes without a connection; syncing conflicts will be handled in a
second phase. The redesign of the settings page is postponed, because the research showed that few
users visit it. Marco raised the concern that the test devices are old and do not reflect what
customers use, and the team agreed to buy three newer phones. Support tickets about login problems
have doubled since the last release, so two developers will spend the first week on that before
joining the offline work.""",
     "Why was the settings redesign postponed, and what will two developers do first?"),
    ("report on a small museum's exhibition", """\
The exhibition 'Buttons and Belonging' at the Hollin Street Museum closed last Sunday after four
months. It displayed around two thousand buttons collected from local families, each with a short
story of the coat, uniform or wedding dress it came from. The museum expected about five thousand
visitors but counted more than eleven thousand, many of them people who had lent buttons and came
back with relatives. The most popular object was a tin of buttons kept by a seamstress during the
war, which visitors could open and touch. The museum now plans to publish the stories as a small
book and to lend part of the collection to the regional archive, which will scan each button and
its story for an online catalogue.""",
     "How many visitors came compared with what was expected, and why?"),
    ("article about a village shop run by volunteers", """\
When the last shop in the village of Brackley Down closed three years ago, residents had to drive
eight kilometres for a loaf of bread. Today the old post office building houses a community shop
run by forty volunteers, each working one or two shifts a week. The shop sells bread from a
bakery in the next town, vegetables from two local farms and basic groceries. It also has a
small café corner, which has become a meeting place for older residents who live alone. The shop
was bought with shares sold to 230 residents at fifty euros each. It made a small profit last
year, which was spent on a new refrigerator. The main worry is finding younger volunteers, since
most of the current team are retired.""",
     "How was the shop paid for, and what is its main worry?"),
    ("update on a city's tree-planting programme", """\
The city has planted 4,200 street trees in the first two years of its ten-year programme, slightly
behind the target of 5,000. Dry springs killed about nine percent of the young trees, more than the
five percent the planners expected, so the city now waters new trees weekly during their first two
summers and asks residents to adopt a tree near their home. Over six hundred residents have signed
up. The programme favours species that cope with heat and drought, such as hornbeam and field
maple, and avoids planting only one kind of tree on a street so that a single disease cannot wipe
out a whole avenue. Neighbourhoods with the fewest trees today get priority for the coming year.""",
     "Why does the programme avoid planting a single species along a street?"),
    ("minutes of a theatre group's committee", """\
The committee of the Open Door theatre group met on Wednesday. The autumn play will be a comedy
chosen by members' vote, with auditions on the second and third of September. Rehearsals will be
held twice a week in the church hall, which has raised its rent by fifteen percent. To cover the
increase the committee agreed to raise ticket prices by one euro but to keep the price for
children unchanged. Harriet reported that the group's lighting equipment is failing and proposed a
crowdfunding campaign for new LED lights, which would also lower electricity costs. The proposal
was accepted. The group is still looking for someone to take over as treasurer at the annual
meeting in November.""",
     "How will the committee cover the higher rent, and what was proposed for the lighting?"),
    ("a recall notice for a kitchen appliance", """\
Kelvo Home is recalling its 1.7-litre electric kettle, model KH-17, sold between March and October
of this year. In a small number of kettles the switch may fail to turn off the power after the
water boils, which could cause the kettle to overheat. No injuries have been reported. Customers
should stop using the kettle at once, unplug it, and check the model number and batch code on the
label under the base. Kettles with batch codes beginning with 24C to 24J are affected. Customers
can return an affected kettle to any shop that sells Kelvo products for a full refund or a
replacement, with or without a receipt. Kettles with other batch codes are safe to use.""",
     "How can a customer find out whether their kettle is affected, and what can they get?"),
]


def _unwrap(text: str) -> str:
    """The texts above are wrapped for reading here; a prompt gets one line per paragraph."""
    return "\n\n".join(" ".join(p.split()) for p in text.split("\n\n"))


LONG = [(title, kind, _unwrap(text), questions) for title, kind, text, questions in LONG]
MEDIUM = [(kind, _unwrap(text), question) for kind, text, question in MEDIUM]
