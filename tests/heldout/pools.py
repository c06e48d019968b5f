"""Word lists for the held-out note writer: names, streets, towns, clinical phrases.

Written by hand for this writer (see README.md); nothing here comes from the tool under test.
"""

from __future__ import annotations

# ---------------------------------------------------------------- names
# Surnames by community, as (surname, group).  Particles are part of the surname.
SURNAMES: dict[str, list[str]] = {
    "lu": [
        "Schmit", "Weber", "Hoffmann", "Wagner", "Muller", "Thill", "Kremer", "Reuter", "Schroeder",
        "Schmitz", "Kieffer", "Majerus", "Wirtz", "Hansen", "Theis", "Lentz", "Reding", "Thilges",
        "Feltgen", "Faber", "Hilbert", "Goedert", "Ries", "Steichen", "Bettendorff", "Welter", "Wolff",
        "Diederich", "Meyers", "Frisch", "Pütz", "Origer", "Kayser", "Gengler", "Bintner", "Hurt",
        "Clement", "Jacoby", "Lorang", "Mersch", "Nilles", "Olinger", "Pauly", "Rollinger", "Schaack",
        "Schiltz", "Schumacher", "Weis", "Zeimet", "Glodt", "Braquet", "Kirsch", "Krier", "Lux",
        "Biever", "Ewen", "Flammang", "Gloden", "Hemmer", "Kohnen", "Medinger", "Neu", "Scholtes",
        "Spautz", "Thein", "Wiltzius", "Köller", "Hübsch", "Schäfer", "Gröber", "Bück",
    ],
    "pt": [
        "da Silva", "dos Santos", "Ferreira", "Pereira", "Gonçalves", "Rodrigues", "Fernandes",
        "Lopes", "Martins", "Carvalho", "Sousa", "Oliveira", "Costa", "Almeida", "Ribeiro", "Pinto",
        "Teixeira", "Monteiro", "Moreira", "Gomes", "da Costa", "de Jesus", "Simões", "Tavares",
        "Fortes", "Cardoso", "Marques", "Mendes", "Nunes", "Vieira", "Correia", "Machado", "Barbosa",
        "Araújo", "Magalhães", "Gaspar", "Antunes", "Brandão", "Loureiro", "dos Reis", "de Oliveira",
        "Conceição", "Patrício", "Pires",
    ],
    "fr": [
        "Dupont", "Lefèvre", "Moreau", "Bernard", "Girard", "Lemaire", "Rousseau", "Fournier",
        "Le Gall", "Le Roux", "Bonnet", "Chevalier", "Gauthier", "Mercier", "Lefebvre", "Fontaine",
        "de la Fontaine", "Benoît", "Deschamps", "Faucher", "Hébert", "Marchal", "Thiébaut", "Humbert",
        "Bérard", "Noël", "Géraud", "Petit", "Guérin", "Perrin", "Lacroix", "Prévost", "Caron",
        "Le Goff", "Jacquemin", "Collignon", "Béguin",
    ],
    "be": [
        "Dubois", "Lambert", "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Goossens",
        "Dewulf", "Vandenberghe", "van den Berg", "Van Damme", "Collard", "Lejeune", "Renard",
        "Lhoest", "Gérard", "Pirotte", "Delhaye", "Dethier", "Van der Linden", "De Smet", "Claes",
    ],
    "de": [
        "Müller", "Schneider", "Fischer", "Meyer", "Schulz", "Köhler", "Straßer", "Weiß", "Groß",
        "Schütz", "Krüger", "Böhm", "Jäger", "Vogel", "Zimmermann", "Hartmann", "Lange", "Scholz",
        "Kühn", "von der Heyden", "Möller", "Fuchs", "Günther", "Seiler", "Haßler", "Lange",
    ],
    "it": [
        "Rossi", "Bianchi", "D'Amico", "De Luca", "Esposito", "Romano", "Colombo", "Ricci", "Marino",
        "Greco", "Bruno", "Conti", "Di Stefano", "Lo Russo", "Mancini", "Gallo", "Lombardi",
        "Moretti", "Fabbri", "Santoro", "Di Bartolomeo", "Cecchini", "Pellegrini",
    ],
    "balkan": [
        "Hodžić", "Kovačević", "Krasniqi", "Berisha", "Gashi", "Hadžić", "Bajrami", "Muratović",
        "Shala", "Osmani", "Delić", "Begić", "Morina",
    ],
    "cv": ["Lopes", "Tavares", "Fortes", "Monteiro", "Semedo", "Varela", "Delgado", "Brito"],
}

FIRST_M: dict[str, list[str]] = {
    "lu": [
        "Jean", "Jos", "Marc", "Paul", "Guy", "Romain", "Fernand", "Nico", "Gilles", "Claude",
        "Léon", "Henri", "Jeannot", "Raymond", "Yves", "Gérard", "Fränz", "Mett", "Camille", "Pit",
        "Tom", "Luc", "Ben", "Laurent", "Steve", "Sven", "Jhemp", "Norbert", "Aloyse", "Emile",
        "Jean-Marie", "Jean-Claude", "Jean-Paul", "Marcel", "Roby", "Théo",
    ],
    "pt": [
        "João", "José", "António", "Manuel", "Paulo", "Luís", "Rui", "Gonçalo", "Tiago", "Nuno",
        "Sérgio", "Joaquim", "Fernando", "Carlos", "Vítor", "Hélder", "Márcio", "Rúben",
    ],
    "fr": [
        "Jérôme", "Stéphane", "Cédric", "Loïc", "Noël", "Pierre-Yves", "François", "Benoît", "Hervé",
        "Frédéric", "Sébastien", "Thierry", "Régis", "Joël", "Michaël", "Aurélien",
    ],
    "be": ["Didier", "Philippe", "Koen", "Wim", "Geert", "Bart", "Olivier", "Jean-Luc", "Xavier"],
    "de": ["Jürgen", "Günther", "Jörg", "Björn", "Uwe", "Sören", "Klaus", "Dieter", "Hans-Peter", "Jens"],
    "it": ["Giuseppe", "Luca", "Marco", "Giovanni", "Salvatore", "Francesco", "Antonio", "Nicolò"],
    "balkan": ["Emir", "Adnan", "Arben", "Besnik", "Dženan", "Faruk", "Ilir", "Mirza"],
    "cv": ["Ailton", "Edson", "Nelson", "Djamilson", "Adilson"],
}

FIRST_F: dict[str, list[str]] = {
    "lu": [
        "Marie-Paule", "Marie-Josée", "Josiane", "Annette", "Nicole", "Tessy", "Lynn", "Mady",
        "Liliane", "Gaby", "Carine", "Sandy", "Joëlle", "Anne", "Monique", "Jacqueline", "Yvette",
        "Marie-Thérèse", "Françoise", "Christiane", "Martine", "Nathalie", "Claudine", "Sylvie",
        "Lis", "Mia", "Léa", "Nora", "Michèle", "Danielle", "Ginette", "Marianne", "Malou", "Fernande",
    ],
    "pt": [
        "Maria", "Ana", "Fernanda", "Sónia", "Cátia", "Inês", "Conceição", "Fátima", "Cristina",
        "Paula", "Rosa", "Lurdes", "Graça", "Joana", "Márcia", "Vânia", "Sílvia", "Mariana",
    ],
    "fr": [
        "Hélène", "Émilie", "Gaëlle", "Mélanie", "Zoé", "Anaïs", "Céline", "Aurélie", "Géraldine",
        "Béatrice", "Chloé", "Noémie", "Anne-Sophie", "Marie-Hélène", "Clémence", "Agnès",
    ],
    "be": ["Ingrid", "Sofie", "An", "Els", "Véronique", "Murielle", "Laurence", "Delphine", "Hilde"],
    "de": ["Käthe", "Jutta", "Gisela", "Ursula", "Bärbel", "Renate", "Sabine", "Anna-Lena", "Hannelore", "Jördis"],
    "it": ["Francesca", "Chiara", "Giulia", "Rosaria", "Antonella", "Giuseppina", "Carmela", "Ilaria"],
    "balkan": ["Amra", "Edina", "Mirela", "Arbëresha", "Lejla", "Vjosa", "Selma", "Merita"],
    "cv": ["Djenifer", "Elisângela", "Ivone", "Nilza", "Zulmira"],
}

# Faker locales used beside the lists (first names by sex, last names)
FAKER_LOCALES: dict[str, str] = {
    "fr": "fr_FR",
    "be": "fr_BE",
    "nl": "nl_BE",
    "de": "de_DE",
    "pt": "pt_PT",
    "it": "it_IT",
}
# de_LU gives Luxembourgish surnames only (its first names are placeholders)
FAKER_LU_SURNAMES = "de_LU"

GROUP_WEIGHTS = [
    ("lu", 34), ("pt", 20), ("fr", 14), ("be", 8), ("de", 8), ("it", 7), ("balkan", 5), ("cv", 4),
]

# ---------------------------------------------------------------- titles
PATIENT_TITLES_M = ["M. ", "Monsieur ", "Mr ", "M ", "Mr. "]
PATIENT_TITLES_F = ["Mme ", "Madame ", "Mme. ", "Mlle "]
DOC_TITLES = ["Dr ", "Dr. ", "Docteur ", "Dr ", "Dr ", "Pr ", "Prof. ", "Dr méd. "]
NURSE_TITLES_F = ["Mme ", "", "", "Inf. ", "IDE "]
NURSE_TITLES_M = ["M. ", "", "", "Inf. ", "IDE "]

# ---------------------------------------------------------------- places
# (postcode ranges, town) for Luxembourg
LU_TOWNS: list[tuple[int, int, str]] = [
    (1009, 2999, "Luxembourg"), (4001, 4398, "Esch-sur-Alzette"), (4501, 4599, "Differdange"),
    (3401, 3499, "Dudelange"), (9001, 9099, "Ettelbruck"), (9201, 9299, "Diekirch"),
    (9501, 9599, "Wiltz"), (9701, 9749, "Clervaux"), (6401, 6499, "Echternach"),
    (5501, 5599, "Remich"), (6701, 6799, "Grevenmacher"), (7501, 7599, "Mersch"),
    (8001, 8099, "Strassen"), (8051, 8099, "Bertrange"), (8201, 8299, "Mamer"),
    (5801, 5899, "Hesperange"), (4701, 4799, "Pétange"), (3201, 3299, "Bettembourg"),
    (3801, 3899, "Schifflange"), (3601, 3699, "Kayl"), (5601, 5699, "Mondorf-les-Bains"),
    (9401, 9499, "Vianden"), (6101, 6199, "Junglinster"), (8401, 8499, "Steinfort"),
    (7201, 7299, "Walferdange"), (9801, 9899, "Hosingen"), (9901, 9999, "Troisvierges"),
    (3701, 3799, "Rumelange"), (4401, 4499, "Belvaux"), (4801, 4899, "Bascharage"),
    (3901, 3999, "Mondercange"), (1801, 1899, "Howald"), (9601, 9699, "Wemperhardt"),
    (8301, 8399, "Capellen"), (7301, 7399, "Steinsel"), (5201, 5299, "Sandweiler"),
]
FR_TOWNS = [
    ("57100", "Thionville"), ("57000", "Metz"), ("54400", "Longwy"), ("57700", "Hayange"),
    ("57390", "Audun-le-Tiche"), ("57970", "Yutz"), ("57330", "Hettange-Grande"),
    ("54350", "Mont-Saint-Martin"), ("57310", "Guénange"), ("57290", "Fameck"), ("57570", "Cattenom"),
]
BE_TOWNS = [("6700", "Arlon"), ("6790", "Aubange"), ("6791", "Athus"), ("6780", "Messancy"),
            ("6600", "Bastogne"), ("6760", "Virton")]
DE_TOWNS = [("54290", "Trier"), ("54292", "Trier"), ("54439", "Saarburg"), ("66706", "Perl"),
            ("54329", "Konz"), ("54634", "Bitburg"), ("66693", "Mettlach")]

LU_STREETS_FR = [
    "rue de la Gare", "route d'Arlon", "rue de Hollerich", "boulevard de la Pétrusse",
    "avenue de la Liberté", "rue du Fort Neipperg", "rue Émile Mayrisch", "rue de l'Alzette",
    "rue du Brill", "rue de Luxembourg", "route de Thionville", "rue des Prés", "rue de l'Église",
    "rue Principale", "Grand-Rue", "rue du Moulin", "rue des Champs", "rue de la Forêt",
    "rue Michel Rodange", "rue Dicks", "avenue Victor Hugo", "rue Nicolas Welter",
    "boulevard J.F. Kennedy", "rue des Romains", "route de Luxembourg", "montée de la Pétrusse",
    "Val Sainte-Croix", "Côte d'Eich", "rue Jean-Pierre Brasseur", "rue de Strasbourg",
    "rue Aldringen", "avenue Gaston Diderich", "rue Zénon Bernard", "rue du Canal",
    "rue de Bettembourg", "rue de Mondorf", "route de Longwy", "rue de Beggen", "rue des Aubépines",
    "rue Jean Origer", "boulevard Grande-Duchesse Charlotte", "rue de Mamer", "rue d'Esch",
]
LU_STREETS_LB = [
    "Haaptstrooss", "Kierchestrooss", "Op der Heed", "Um Bierg", "Am Duerf", "Bei der Kapell",
    "An der Uecht", "Op der Tonn", "Schoulstrooss", "Millewee", "Um Bongert", "Rue Op der Heed",
    "An de Wisen", "Am Bann", "Um Knapp", "Beim Weier", "Lëtzebuergerstrooss",
]
DE_STREETS = [
    "Hauptstraße", "Kirchstraße", "Bahnhofstraße", "Schulstraße", "Am Markt", "Paulinstraße",
    "Saarstraße", "Trierer Straße", "Luxemburger Straße", "Moselweinstraße", "Im Wingert",
    "Gartenstraße", "Lindenweg",
]
FR_STREETS = [
    "rue Victor Hugo", "avenue de la République", "rue du Général de Gaulle", "place de la Libération",
    "rue des Jardins", "allée des Tilleuls", "chemin des Vignes", "impasse des Lilas",
    "rue de Metz", "rue Pasteur", "rue de la Paix", "boulevard Foch",
]
BE_STREETS = [
    "rue de Bastogne", "avenue de Longwy", "rue des Martyrs", "Grand-Place", "rue de la Semois",
    "rue de Neufchâteau", "chaussée romaine", "rue des Déportés", "Kapellestraat",
]

# Towns written alone (not identifiers)
TOWNS_ALONE = [t for _, _, t in LU_TOWNS] + [t for _, t in FR_TOWNS] + [t for _, t in BE_TOWNS] + [
    "Trèves", "Sarrebruck", "Bruxelles", "Nancy", "Porto", "Lisbonne", "Coimbra", "Braga",
]

# Hospitals and places of care (not identifiers, some carry a person's name on purpose)
HOSPITALS = [
    ("Centre Hospitalier de Luxembourg", "CHL", "chl.lu"),
    ("Centre Hospitalier Emile Mayrisch", "CHEM", "chem.lu"),
    ("Hôpitaux Robert Schuman", "HRS", "hopitauxschuman.lu"),
    ("Centre Hospitalier du Nord", "CHdN", "chdn.lu"),
    ("Hôpital Kirchberg", "HK", "hopitauxschuman.lu"),
    ("ZithaKlinik", "ZK", "hopitauxschuman.lu"),
    ("Hôpital Princesse Marie-Astrid", "HPMA", "chem.lu"),
    ("Clinique Bohler", "CB", "hopitauxschuman.lu"),
]
OTHER_PLACES = [
    "Rehazenter", "Maison de soins Sainte-Zithe", "CIPA Op der Rhum", "Centre de rééducation de Colpach",
    "Maison Médicale de Luxembourg", "Institut National de Chirurgie Cardiaque (INCCI)",
    "Centre Hospitalier Neuro-Psychiatrique (CHNP) d'Ettelbruck", "Clinique Sainte-Marie",
    "Hôpital de Mercy (Metz)", "Klinikum Mutterhaus der Borromäerinnen (Trier)",
    "Foyer Saint-Joseph", "Haus Omega", "Réseau Help", "Stëftung Hëllef Doheem",
]
WARDS = [
    "unité 32", "unité 61 (médecine interne)", "service de cardiologie, 3e étage", "policlinique",
    "hôpital de jour oncologique", "soins intensifs (SI 2)", "unité de gériatrie aiguë",
    "service de pneumologie", "Station 4B", "unité de court séjour", "salle de réveil",
]

EMAIL_DOMAINS = [
    "pt.lu", "post.lu", "internet.lu", "tango.lu", "gmail.com", "hotmail.com", "hotmail.fr",
    "yahoo.fr", "outlook.com", "web.de", "gmx.de", "skynet.be", "orange.fr", "free.fr", "sapo.pt",
    "icloud.com", "education.lu",
]

SPECIALTIES = [
    ("cardiologie", "cardiologue"), ("médecine interne", "interniste"), ("pneumologie", "pneumologue"),
    ("neurologie", "neurologue"), ("gériatrie", "gériatre"), ("gastro-entérologie", "gastro-entérologue"),
    ("chirurgie orthopédique", "chirurgien orthopédiste"), ("chirurgie viscérale", "chirurgien viscéral"),
    ("oncologie", "oncologue"), ("néphrologie", "néphrologue"), ("endocrinologie", "endocrinologue"),
    ("urgences", "urgentiste"), ("anesthésie", "anesthésiste"), ("radiologie", "radiologue"),
    ("psychiatrie", "psychiatre"), ("pédiatrie", "pédiatre"), ("rhumatologie", "rhumatologue"),
]

# ---------------------------------------------------------------- calendar words
MONTHS_FR = ["janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
             "octobre", "novembre", "décembre"]
MONTHS_FR_ABBR = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
                  "nov.", "déc."]
MONTHS_DE = ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
             "Oktober", "November", "Dezember"]
MONTHS_LB = ["Januar", "Februar", "Mäerz", "Abrëll", "Mee", "Juni", "Juli", "August", "September",
             "Oktober", "November", "Dezember"]
WEEKDAYS_FR = ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"]

# ---------------------------------------------------------------- clinical text (no identifiers)
# Eponyms and named devices: (phrase, the name tokens it carries).  Never in gold.
EPONYMS: list[tuple[str, tuple[str, ...]]] = [
    ("maladie de Parkinson", ("Parkinson",)), ("syndrome de Cushing", ("Cushing",)),
    ("signe de Babinski", ("Babinski",)), ("score de Glasgow", ("Glasgow",)),
    ("signe de Murphy", ("Murphy",)), ("manœuvre de Lasègue", ("Lasègue",)),
    ("thyroïdite de Hashimoto", ("Hashimoto",)), ("maladie de Crohn", ("Crohn",)),
    ("maladie d'Alzheimer", ("Alzheimer",)), ("phénomène de Raynaud", ("Raynaud",)),
    ("Holter ECG", ("Holter",)), ("écho-Doppler", ("Doppler",)), ("sonde de Foley", ("Foley",)),
    ("maladie de Horton", ("Horton",)), ("coloration de Gram", ("Gram",)),
    ("sérologie Epstein-Barr", ("Epstein", "Barr")), ("maladie de Dupuytren", ("Dupuytren",)),
    ("fracture de Pouteau-Colles", ("Pouteau", "Colles")), ("position de Trendelenburg", ("Trendelenburg",)),
    ("critères de Duke", ("Duke",)), ("score de Wells", ("Wells",)),
    ("classification de Child-Pugh", ("Child", "Pugh")), ("signe de Romberg", ("Romberg",)),
    ("signe de Homans", ("Homans",)), ("syndrome de Guillain-Barré", ("Guillain", "Barré")),
    ("maladie de Basedow", ("Basedow",)), ("classification de Killip", ("Killip",)),
    ("critères de Light", ("Light",)), ("syndrome de Mallory-Weiss", ("Mallory", "Weiss")),
    ("sonde de Swan-Ganz", ("Swan", "Ganz")), ("échelle de Norton", ("Norton",)),
    ("maladie de Paget", ("Paget",)), ("angor de Prinzmetal", ("Prinzmetal",)),
    ("respiration de Kussmaul", ("Kussmaul",)), ("score de Fine", ("Fine",)),
    ("score de Mallampati", ("Mallampati",)), ("critères de Fleischner", ("Fleischner",)),
    ("incision de Pfannenstiel", ("Pfannenstiel",)), ("drain de Redon", ("Redon",)),
    ("test de Lachman", ("Lachman",)), ("signe de Tinel", ("Tinel",)),
    ("signes de Kernig et de Brudzinski", ("Kernig", "Brudzinski")), ("maladie d'Addison", ("Addison",)),
    ("lymphome de Hodgkin", ("Hodgkin",)), ("technique de Seldinger", ("Seldinger",)),
    ("score d'Apgar", ("Apgar",)), ("Klebsiella pneumoniae", ("Klebsiella",)),
    ("encéphalopathie de Gayet-Wernicke", ("Gayet", "Wernicke")), ("œdème de Quincke", ("Quincke",)),
    ("diverticule de Meckel", ("Meckel",)), ("maladie de Waldenström", ("Waldenström",)),
    ("insuffisance de Hoffa", ("Hoffa",)), ("canal de Wirsung", ("Wirsung",)),
    ("manœuvre de Valsalva", ("Valsalva",)), ("point de McBurney", ("McBurney",)),
    ("classification de Neer", ("Neer",)), ("test de Schirmer", ("Schirmer",)),
]

# Other words of the clinical text and place names that must never be a person's name in these notes
RESERVED_NAME_WORDS = [
    "Broca", "Garden", "Forrest", "Calot", "Lichtenstein", "Manchester", "Tinetti", "Braden", "Madopar",
    "Mayrisch", "Schuman", "Bohler", "Zithe", "Omega", "Borromäerinnen", "Endoloop", "Omnipaque",
]

EPONYM_SENTENCES = [
    "Pas de {E}.", "{E} négatif.", "Antécédent de {E}.", "{E} évoqué(e), à confirmer.",
    "Recherche de {E} : négative.", "{E} : RAS.", "Suspicion de {E} écartée.",
]
# eponym phrases that read well as standalone findings
EPONYM_FINDINGS = [
    "Score de Glasgow à 15.", "Signe de Babinski absent des deux côtés.", "Signe de Murphy négatif.",
    "Manœuvre de Lasègue négative à droite comme à gauche.", "Maladie de Parkinson connue, sous Madopar.",
    "Thyroïdite de Hashimoto substituée.", "Syndrome de Cushing exclu (test de freinage normal).",
    "Holter ECG de 24 h demandé.", "Écho-Doppler veineux des membres inférieurs : pas de TVP.",
    "Sonde de Foley posée aux urgences.", "Coloration de Gram : cocci Gram positif en amas.",
    "Maladie de Crohn en rémission sous azathioprine.", "Troubles cognitifs évocateurs d'une maladie d'Alzheimer.",
    "Phénomène de Raynaud ancien.", "Maladie de Horton évoquée, biopsie d'artère temporale demandée.",
    "Critères de Duke non remplis.", "Score de Wells bas, D-dimères négatifs.",
    "Cirrhose classée Child-Pugh A.", "Signe de Homans négatif.", "Classification de Killip I.",
    "Épanchement exsudatif selon les critères de Light.", "Échelle de Norton à 13 : risque d'escarre.",
    "Angor de Prinzmetal suspecté.", "Respiration de Kussmaul à l'admission.",
    "Mallampati II, ouverture de bouche > 3 travers de doigt.", "Nodule de 5 mm : pas de suivi selon Fleischner.",
    "Drain de Redon retiré à J2.", "Test de Lachman négatif.", "Signe de Tinel positif au canal carpien.",
    "Pas de signes de Kernig ni de Brudzinski.", "Klebsiella pneumoniae BLSE dans l'ECBU.",
    "Score d'Apgar 9/10/10.", "Pas de point de McBurney douloureux.", "Manœuvre de Valsalva efficace.",
    "Fracture de Pouteau-Colles traitée orthopédiquement.", "Position de Trendelenburg pour la pose de la voie centrale.",
    "Pose de voie veineuse centrale selon la technique de Seldinger.",
    "Lymphome de Hodgkin en rémission complète.", "Encéphalopathie de Gayet-Wernicke à évoquer : vitamine B1.",
    "Pas d'œdème de Quincke.", "Maladie de Dupuytren bilatérale.", "Syndrome de Guillain-Barré écarté (PL normale).",
]

DRUGS = [
    "Metformine 1000 mg 2x/j", "Metformine 850 mg 1-0-1", "Bisoprolol 2,5 mg 1-0-0", "Ramipril 5 mg 1x/j",
    "Atorvastatine 40 mg le soir", "Apixaban (Eliquis) 5 mg 2x/j", "Kardegic 80 mg 1x/j",
    "Furosémide 40 mg 1-1-0", "Pantoprazole 40 mg à jeun", "Paracétamol 1 g max 4x/j",
    "Amoxicilline/acide clavulanique 875/125 mg 3x/j pdt 7 jours", "Lévothyroxine 75 µg le matin",
    "Insuline glargine (Lantus) 18 UI le soir", "Énoxaparine 40 mg SC 1x/j", "Madopar 125 mg 3x/j",
    "Sertraline 50 mg 1x/j", "Zolpidem 10 mg au coucher si besoin", "Tramadol 50 mg si douleur, max 4x/j",
    "Spironolactone 25 mg 1x/j", "Amlodipine 5 mg 1-0-0", "Salbutamol 2 bouffées si besoin",
    "Tiotropium 18 µg 1 inhalation/j", "Prednisolone 40 mg pdt 5 jours", "Vitamine D3 25 000 UI 1x/mois",
    "Macrogol 1 sachet/j", "Dafalgan 1 g 3x/j", "Rivaroxaban (Xarelto) 20 mg au repas du soir",
    "Marcoumar selon INR (cible 2-3)", "Empagliflozine 10 mg 1x/j", "Sacubitril/valsartan 49/51 mg 2x/j",
    "Allopurinol 100 mg 1x/j", "Clopidogrel 75 mg 1x/j", "Oxazépam 10 mg le soir", "Mirtazapine 15 mg au coucher",
    "Ceftriaxone 2 g IV 1x/j", "Pipéracilline/tazobactam 4 g/0,5 g IV 3x/j", "Morphine 5 mg SC si EVA > 4",
    "Ondansétron 4 mg IV si nausées", "Lactulose 10 ml 2x/j", "Fer (Ferrograd) 105 mg 1x/j",
    "Tamsulosine 0,4 mg le soir", "Dapagliflozine 10 mg 1x/j", "Sémaglutide 1 mg SC 1x/semaine",
]

LABS = [
    ("Hb", "g/dl", 8.5, 16.5, 1), ("Leucocytes", "G/l", 3.5, 19.0, 1), ("Plaquettes", "G/l", 90, 450, 0),
    ("CRP", "mg/l", 0.5, 220, 1), ("Créatinine", "mg/dl", 0.6, 3.2, 2), ("DFG (CKD-EPI)", "ml/min/1,73 m²", 18, 110, 0),
    ("Na+", "mmol/l", 128, 146, 0), ("K+", "mmol/l", 3.1, 5.9, 1), ("HbA1c", "%", 5.4, 11.5, 1),
    ("NT-proBNP", "pg/ml", 90, 12500, 0), ("Troponine T hs", "ng/l", 4, 900, 0), ("TSH", "mUI/l", 0.05, 9.5, 2),
    ("INR", "", 0.9, 3.8, 1), ("Glycémie", "mg/dl", 68, 390, 0), ("ASAT", "U/l", 12, 240, 0),
    ("ALAT", "U/l", 9, 310, 0), ("GGT", "U/l", 11, 420, 0), ("Lactates", "mmol/l", 0.6, 6.5, 1),
    ("PCT", "ng/ml", 0.02, 12.0, 2), ("Ferritine", "µg/l", 8, 900, 0), ("Vit. D (25-OH)", "ng/ml", 6, 55, 0),
    ("LDL-cholestérol", "mg/dl", 45, 210, 0), ("D-dimères", "µg/l", 150, 4200, 0), ("Albumine", "g/l", 24, 46, 0),
]

# Ordinary words that are also surnames in the lists (traps when the patient bears that name)
HOMOGRAPHS: dict[str, list[str]] = {
    "petit": ["Petit épanchement pleural droit.", "Un petit hématome au point de ponction.",
              "Petit saignement à la mobilisation du pansement."],
    "fortes": ["Douleurs plus fortes la nuit.", "Corticothérapie à fortes doses pendant 3 jours."],
    "pires": ["Les douleurs sont pires le matin au réveil.", "Symptômes pires en position couchée."],
    "neu": ["Befund (Trier) : neu aufgetretenes Vorhofflimmern."],
    "lange": ["Befund : Patient lag lange am Boden, CK erhöht."],
    "frisch": ["Befund : Wunde reizlos, Verband frisch gewechselt."],
    "weiß": ["Befund : Patient weiß nicht mehr, wie er gestürzt ist."],
}

WORDS_PETIT = [  # sentences using ordinary words that are also surnames in the lists (traps)
    "Petit épanchement pleural droit.", "Petite lame d'ascite périhépatique.", "Un petit hématome au point de ponction.",
    "Cœur de petite taille, pas de péricardite.", "Un petit saignement à la mobilisation du pansement.",
]
