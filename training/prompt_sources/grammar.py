"""Sentences with grammar, spelling or punctuation errors, written for this project."""

SENTENCES = [
    "Me and my sister goes to the swimming pool every tuesdays.",
    "The results of the survey was announced yesterday, but nobody have read them yet.",
    "She don't like coffee, she prefer tea with a little of milk.",
    "If I would have knew the shop closes early, I would of went in the morning.",
    "Their going to move to a new apartment next month, its closer to there work.",
    "Each of the students have to hand in they're homework before friday.",
    "The dog wagged it's tail when it seen his owner coming home.",
    "I have went to that restaurant three times and the food were always cold.",
    "Between you and I, the manager don't know what he is doing.",
    "We was waiting for the bus during one hour but it never came.",
    "Less people came to the concert then we expected.",
    "He asked me where was the train station.",
    "The childrens played in the garden untill it get dark.",
    "I am agree with you that the plan need more time.",
    "My brother is more taller than me, but I am more faster.",
    "Could you borrow me your pen for a minute?",
    "She has been living in London since five years.",
    "The informations you sent me was very usefull.",
    "Neither the teacher nor the students was happy with the new timetable.",
    "After eating dinner, the dishes were washed by my father.",
    "We are looking forward to meet your family next summer.",
    "Everyone must bring their own lunch, and don't forget your waters bottle.",
    "The company have announced that it will hire fifty new employee.",
    "When I arrived to the airport, my flight has already left.",
    "He is one of the best player in the team, he score every match.",
    "Despite of the rain, we decided to go for a walk in the park.",
    "There is many reasons why people choose to live in the countryside.",
    "I didn't went to school yesterday because I was sick.",
    "The book who I am reading is very interesting.",
    "Please send me the report until monday morning.",
    "She said me that she will call later, but she never did.",
    "Its important to drink enough water, specially in summer.",
    "The team are playing good this season, they won five game in a row.",
    "I have less friends than my brother but mine are more closer.",
    "We discussed about the problem for two hours without to find a solution.",
    "My parents lets me stay up late on weekend's.",
    "The price of the tickets have raised again this year.",
    "He works hardly every day to support his family.",
    "Whose going to the party tonight, and what time it starts?",
    "The museum was closed, so we have gone to the beach instead and swam alot.",
    "I seen the film last week and I think it was the most funniest film of the year.",
    "Can you explain me how this machine work?",
    "Im really exciting about my trip to japan next summer.",
    "The meeting has been postpone to next week due to the manager is ill.",
]

INSTRUCTIONS = [
    "Correct the grammar of this sentence: {text}",
    "Fix the grammatical errors in the following sentence and give the corrected version.\n{text}",
    "Please proofread this sentence and correct any mistakes in grammar, spelling or punctuation:\n\"{text}\"",
    "Rewrite the sentence below in correct English, then briefly list what you changed.\n{text}",
]

# A few longer paragraphs with several errors each.
PARAGRAPHS = [
    "Last weekend me and my friends goes camping near the lake. We was very excited but when we arrived, "
    "it start to rain. We has forgot the tent poles at home so we have to sleep in the car. In the morning "
    "the sun come out and we swimmed in the lake, it were the best part of the trip.",
    "Dear Madam, I write because the washing machine who I buyed from your store in June are broken. "
    "From the first week it make a very loud noise and the door don't close proper. I have call your "
    "customer service three times but nobody have helped me. I would like to recieve a refund as soon as possible.",
    "Our company are looking for a new office because the current one is to small. We have visit four "
    "buildings but none of them were suitable, the rent was either to high or the location were not good "
    "for public transport. We hope to find something before the end of the year, otherwise we will have "
    "to working from home more often.",
    "My grandfather was born in a small village where their was no electricity. He walk five kilometre to "
    "school every day, even in winter. He often tell us that life was more harder then, but people was "
    "happier because they helped each others.",
]

PARAGRAPH_INSTRUCTIONS = [
    "Correct all the grammar and spelling mistakes in this paragraph:\n\n{text}",
    "Edit the following text so that it is grammatically correct, keeping the meaning the same.\n\n{text}",
]
