"""Small word lists shipped with dedup so the data generator (``dedup.synth``) runs offline.

Common English-language given names (with a usual nickname each), surnames, street words, towns
and e-mail domains. The generator adds invented syllable surnames for a realistic long tail.
"""

FIRST_NAMES = """
james john robert michael william david richard joseph thomas charles christopher daniel matthew
anthony mark donald steven paul andrew joshua kenneth kevin brian george timothy ronald edward
jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin
samuel gregory alexander frank patrick raymond jack dennis jerry tyler aaron jose adam nathan
henry douglas zachary peter kyle ethan walter noah jeremy christian keith roger terry gerald
harold sean austin carl arthur lawrence dylan jesse jordan bryan billy joe bruce gabriel logan
albert willie alan juan wayne elijah randy roy vincent ralph eugene russell bobby mason philip
louis mary patricia jennifer linda elizabeth barbara susan jessica sarah karen lisa nancy betty
margaret sandra ashley kimberly emily donna michelle carol amanda dorothy melissa deborah
stephanie rebecca sharon laura cynthia kathleen amy angela shirley anna brenda pamela emma nicole
helen samantha katherine christine debra rachel carolyn janet catherine maria heather diane
ruth julie olivia joyce virginia victoria kelly lauren christina joan evelyn judith megan andrea
cheryl hannah jacqueline martha gloria teresa ann sara madison frances kathryn janice jean abigail
alice judy sophia grace denise amber doris marilyn danielle beverly isabella theresa diana natalie
brittany charlotte marie kayla alexis lori violet oliver harry isla poppy freya ivy florence
""".split()

NICKNAMES = {
    "james": "jim",
    "john": "jack",
    "robert": "bob",
    "michael": "mike",
    "william": "bill",
    "david": "dave",
    "richard": "rick",
    "joseph": "joe",
    "thomas": "tom",
    "charles": "charlie",
    "christopher": "chris",
    "daniel": "dan",
    "matthew": "matt",
    "anthony": "tony",
    "donald": "don",
    "steven": "steve",
    "andrew": "andy",
    "joshua": "josh",
    "kenneth": "ken",
    "timothy": "tim",
    "ronald": "ron",
    "edward": "ed",
    "jeffrey": "jeff",
    "jacob": "jake",
    "nicholas": "nick",
    "jonathan": "jon",
    "stephen": "steve",
    "benjamin": "ben",
    "samuel": "sam",
    "gregory": "greg",
    "alexander": "alex",
    "patrick": "pat",
    "raymond": "ray",
    "gerald": "gerry",
    "harold": "harry",
    "lawrence": "larry",
    "gabriel": "gabe",
    "albert": "al",
    "philip": "phil",
    "louis": "lou",
    "elizabeth": "liz",
    "barbara": "barb",
    "susan": "sue",
    "jessica": "jess",
    "margaret": "maggie",
    "sandra": "sandy",
    "kimberly": "kim",
    "deborah": "debbie",
    "stephanie": "steph",
    "rebecca": "becky",
    "cynthia": "cindy",
    "kathleen": "kathy",
    "pamela": "pam",
    "samantha": "sam",
    "katherine": "kate",
    "christine": "chris",
    "catherine": "cathy",
    "victoria": "vicky",
    "christina": "tina",
    "judith": "judy",
    "jacqueline": "jackie",
    "abigail": "abby",
    "theresa": "tess",
    "natalie": "nat",
    "charlotte": "lottie",
    "isabella": "bella",
    "alexis": "lexi",
    "florence": "flo",
    "frances": "fran",
    "virginia": "ginny",
    "dorothy": "dot",
    "beverly": "bev",
    "danielle": "dani",
    "oliver": "ollie",
    "zachary": "zach",
    "douglas": "doug",
    "peter": "pete",
    "walter": "walt",
    "russell": "russ",
    "vincent": "vince",
    "eugene": "gene",
}

SURNAMES = """
smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark
ramirez lewis robinson walker young allen king wright scott torres nguyen hill flores green adams
nelson baker hall rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker
cruz edwards collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper
peterson bailey reed kelly howard ramos kim cox ward richardson watson brooks chavez wood james
bennett gray mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster
jimenez powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales fisher
vasquez simmons romero jordan patterson alexander hamilton graham reynolds griffin wallace moreno
west cole hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford castro marshall
owens harrison fernandez mcdonald woods washington kennedy wells vargas henry chen freeman webb
tucker guzman burns crawford olson simpson porter hunter gordon mendez silva shaw snyder mason
dixon munoz hunt hicks holmes palmer wagner black robertson boyd rose stone salazar fox warren
mills meyer rice schmidt garza daniels ferguson nichols stephens soto weaver ryan gardner payne
grant dunn kelley spencer hawkins arnold pierce vazquez hansen peters santos hart bradley knight
elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray delgado berry
perkins hoffman johnston matthews pena richards willis carpenter lawrence sandoval guerrero george
chapman rios estrada ortega watkins greene nunez wheeler valdez harper burke larson santiago
maldonado morrison franklin carlson austin dominguez carr lawson jacobs obrien lynch singh vega
bishop montgomery oliver jensen harvey williamson gilbert dean sims espinoza howell li wong reid
hanson le mccoy garrett burton fuller wang weber welch rojas lucas marquez fields park yang little
banks padilla day walsh bowman schultz luna fowler mejia davidson acosta brewer may holland juarez
newman pearson curtis cortez douglas schneider joseph barrett navarro figueroa keller avila wade
molina stanley hopkins campos barnett bates chambers caldwell beck lambert miranda byrd craig ayala
lowe frazier powers neal leonard gregory carrillo sutton fleming rhodes shelton schwartz norris
""".split()

SYLLABLES = """
al an ar ba be bo bra ca ce cha co da de di do el en er fa fe fi ga ge go ha he hi ho ka ke ki
la le li lo lu ma me mi mo mu na ne ni no or pa pe pi po ra re ri ro ru sa se si so ta te ti to
tu va ve vi wa we wi ya yo za ze zo ton son ley ford wick ham by berg stein man ner ski dez vic
""".split()

STREET_WORDS = """
oak maple pine cedar elm birch willow ash cherry walnut chestnut poplar church mill station park
high bridge hill main north south east west king queen victoria albert george london manor grange
green meadow orchard river lake forest spring garden castle abbey chapel college market school
""".split()

STREET_TYPES = ("street", "road", "avenue", "lane", "drive", "close", "way", "place", "court", "crescent")
STREET_ABBREVIATIONS = {
    "street": "st",
    "road": "rd",
    "avenue": "ave",
    "lane": "ln",
    "drive": "dr",
    "close": "cl",
    "way": "wy",
    "place": "pl",
    "court": "ct",
    "crescent": "cres",
}

CITIES = """
london birmingham manchester leeds glasgow sheffield bradford liverpool edinburgh bristol cardiff
leicester coventry nottingham newcastle belfast brighton hull plymouth stoke wolverhampton derby
swansea southampton salford aberdeen westminster portsmouth york peterborough dundee lancaster
oxford newport preston cambridge norwich chester exeter gloucester bath wakefield lincoln
sunderland worcester inverness stirling perth salisbury canterbury winchester durham carlisle
""".split()

EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "hotmail.com",
    "outlook.com",
    "icloud.com",
    "mail.com",
    "aol.com",
    "proton.me",
    "btinternet.com",
    "sky.com",
)
