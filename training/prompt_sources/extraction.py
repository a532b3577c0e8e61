"""Texts with facts to pull out, and what to extract from each, written for this project."""

ITEMS = [
    ("Hi team, the quarterly review will take place on Thursday 14 November from 10:00 to 12:30 in room "
     "B204. Please send your slides to Hannah Lee by Tuesday evening. Lunch will be served afterwards in the "
     "staff canteen. If you cannot attend, let Oscar know so he can share the recording.",
     "Extract the date, time, room, the person to send slides to, and the deadline as JSON."),
    ("Order confirmation. Order number 58213-K. Items: 2 x ceramic mug (12.50 each), 1 x teapot (34.00), "
     "1 x box of green tea (8.75). Shipping: 4.95. Delivery address: Via Roma 17, 40121 Bologna. Expected "
     "delivery: 3 to 5 working days.",
     "List each item with its quantity and price, then give the order total including shipping."),
    ("Patient: Tomas Lindqvist, born 1961. Visited the clinic on 2 May complaining of a dry cough for three "
     "weeks and mild fever in the evenings. No known allergies. Prescribed: rest, fluids, and a follow-up "
     "in ten days. Blood pressure 135/85.",
     "Extract the patient's name, year of birth, symptoms, allergies and the follow-up plan."),
    ("The Lakeside Half Marathon starts at 8:30 on Sunday 6 April at the boat club. Registration closes on "
     "28 March and costs 35 euros, or 25 euros for club members. The course is 21.1 kilometres and closes "
     "after three hours. Every finisher receives a medal and a T-shirt.",
     "Pull out the event name, start time, date, place, registration deadline, prices and time limit."),
    ("Apartment for rent: bright two-bedroom flat on the third floor of a building with a lift, 68 square "
     "metres, balcony facing south, renovated kitchen. Rent 1,150 euros per month plus 120 euros for service "
     "charges. Available from 1 September. No pets. Contact Marguerite on 06 12 34 56 78.",
     "Extract the size, number of bedrooms, floor, monthly cost in total, availability date and pet policy."),
    ("Yesterday the city council approved the budget for next year. Spending on public transport rises by "
     "eight percent to 96 million euros, while the roads budget falls by three percent. The council also "
     "agreed to hire forty new teachers and to freeze the price of swimming pool tickets. The opposition "
     "voted against, saying that local taxes will have to rise in two years.",
     "Extract every decision in the text as a bullet list, and say who opposed it and why."),
    ("Recipe: Lemon and herb lentil soup. Serves 4. Preparation 15 minutes, cooking 35 minutes. You need 250 g "
     "red lentils, 1 onion, 2 carrots, 2 cloves of garlic, 1.2 litres of vegetable stock, the juice of one lemon, "
     "a handful of parsley, olive oil, salt and pepper.",
     "Extract the ingredients with their amounts as a table, and give the total time."),
    ("From: Ravi Menon. Subject: Travel plans. I land at Frankfurt on flight LH 761 at 06:15 on Monday, then take "
     "the 08:02 train to Cologne, arriving at 09:10. My hotel is the Rheinblick on Domstrasse. I fly back on "
     "Thursday at 19:40 from Cologne/Bonn.",
     "Extract the traveller's itinerary as a list of steps with times and places."),
    ("Among the 1,200 people who answered our survey, 46 percent said they work from home at least two days a "
     "week, 31 percent never work from home, and the rest do so occasionally. Younger employees were the most "
     "likely to want more remote work, while managers were the most sceptical. The main complaint about remote "
     "work was loneliness, mentioned by 38 percent.",
     "Extract all the numbers in this text and say what each refers to."),
    ("Job advert: The Greenfield Museum is looking for an assistant curator for its natural history collection. "
     "Full-time, fixed contract of two years, salary between 38,000 and 42,000 euros. Requirements: a master's "
     "degree in biology or a related field, experience with collection databases, and good written English. "
     "Apply by 15 January with a CV and a cover letter.",
     "Extract the job title, employer, contract type, salary range, requirements and application deadline."),
    ("Minutes: present were Aylin, Bruno, Chen and Dorota. Bruno will update the budget spreadsheet by Friday. "
     "Chen and Aylin will visit the new supplier next Wednesday. Dorota will draft the newsletter and send it to "
     "everyone for comments by the end of the month. The next meeting is on the 9th.",
     "List every action item with the person responsible and the deadline."),
    ("The Orion X5 laptop weighs 1.3 kilograms and has a 14-inch screen with a resolution of 2880 by 1800 pixels. "
     "It comes with 16 GB of memory and a 1 TB drive. The battery lasts up to 15 hours. It has two USB-C ports, "
     "one USB-A port and a headphone jack, and it costs 1,299 euros.",
     "Extract the technical specifications into a JSON object with sensible field names."),
    ("Dear customer, your electricity bill for the period 1 June to 31 August is 214.60 euros. You used 812 kWh, "
     "compared with 760 kWh in the same period last year. The amount will be taken from your account ending in "
     "4471 on 15 September. Your monthly advance payment will rise to 75 euros from October.",
     "Extract the billing period, amount, usage, change from last year, payment date and new advance payment."),
    ("In the match on Saturday, Rovers beat City 3-1. Okafor scored twice in the first half, City's Duarte "
     "replied after the break, and substitute Walsh added the third in the last minute. Rovers' goalkeeper "
     "saved a penalty on the hour. The crowd was 18,400.",
     "Extract the result, the goal scorers with their teams, and the attendance."),
    ("Library notice: the following books are overdue. 'A Short History of Bridges', due 3 March; 'Cooking with "
     "Seaweed', due 10 March; 'The Night Orchard', due 17 March. Please return them or renew online. Fines of "
     "20 cents per day apply to each book.",
     "List the overdue books with their due dates, and work out the fine for each on 20 March."),
    ("The Kiruna Valley hostel has 48 beds in dormitories of six and four private rooms. Breakfast is included. "
     "Check-in is from 15:00 to 22:00 and check-out by 10:00. Towels can be rented for 3 euros. The nearest bus "
     "stop is 400 metres away, with buses to the town centre every twenty minutes.",
     "Extract the facts a traveller needs as a short list: beds, rooms, meals, times, extra costs and transport."),
    ("Press release: GreenLoop, a start-up based in Tallinn, has raised 4.5 million euros from two investment "
     "funds to expand its bottle-return machines to Latvia and Lithuania. The company, founded in 2021 by Kadri "
     "Saar and Mihkel Tamm, employs 35 people and plans to double its team by next year.",
     "Extract the company, location, amount raised, purpose, founders, founding year and staff numbers."),
    ("Weather for the weekend: Saturday will start cloudy with a chance of showers in the morning, clearing in "
     "the afternoon, highs of 17 degrees. Sunday will be sunny and warmer, up to 22 degrees, with a light "
     "breeze from the south. Overnight lows around 9 degrees.",
     "Extract the forecast for each day as a table with conditions and temperatures."),
]

# Several of the long documents are also used for extraction (see corpus_prompt_sources.py).
PASSAGE_EXTRACTIONS = [
    (0, "List every amount of money in the report, with what it refers to."),
    (1, "List every decision taken at the meeting and who is responsible for it, as a table."),
    (2, "Extract the maintenance schedule of the purifier: what to do, and how often."),
    (3, "Extract every year mentioned in the text with the event that happened in it, in order."),
    (5, "Extract a timeline of the incident: each time and what happened."),
    (6, "Extract every bird species mentioned with the number counted, as a table."),
    (7, "Extract all the costs and the passenger numbers in the proposal as JSON."),
    (10, "Extract all numbers with their units and what they describe."),
]
