"""Constants and type tables of the generator: scene caps, floor-plan ranges per room, which task types
each room supports, goal receptacles and target objects per task type, pickupable / fixed object types,
synthetic receptacle heights; and lazy access to ``alfworld.gen.constants`` (the original generator's
``canContain`` and action tables)."""

from __future__ import annotations

GRID = 0.25  # AI2-THOR agent step (constants.AGENT_STEP_SIZE)
MAX_PICKUP_OBJECTS = 20  # pickupable object instances per game (keeps planner resets ~1-5 s)
MAX_PICKUP_OBJECTS_TWO = 14  # pick_two_obj_and_place: the planner's search grows fastest there
MAX_RECEPTACLES = 20  # receptacle instances per scene (released games: median 22, up to 54)
MAX_FIXED_PER_TYPE = 2  # windows, chairs, light switches, ... per type
MAX_STEPS = 50  # expert steps allowed when checking a game
MAX_ATTEMPTS = 40  # sampled games per kept game before giving up
MANIFEST = "generation.json"

# ALFRED's test floor plans that back the official valid_unseen split; always held out by default so
# generated train games never overlap the real out-of-distribution set.
ALFRED_UNSEEN_SCENES = (10, 219, 308, 424)

ROOMS = {"Kitchen": range(1, 31), "LivingRoom": range(201, 231), "Bedroom": range(301, 331),
         "Bathroom": range(401, 431)}
# which room types a task can be generated in (alfworld.gen.constants.GOALS_VALID)
TASK_ROOMS = {
    "pick_and_place_simple": {"Kitchen", "LivingRoom", "Bathroom", "Bedroom"},
    "pick_two_obj_and_place": {"Kitchen", "LivingRoom", "Bathroom", "Bedroom"},
    "look_at_obj_in_light": {"LivingRoom", "Bedroom"},
    "pick_clean_then_place_in_recep": {"Kitchen", "Bathroom"},
    "pick_heat_then_place_in_recep": {"Kitchen"},
    "pick_cool_then_place_in_recep": {"Kitchen"},
}
# goal receptacle types per task type: those the released json_2.1.1 games use (the state-changing
# appliance itself is never the goal: no heat -> Microwave, cool -> Fridge, clean -> SinkBasin)
_PLACE_PARENTS = """ArmChair Bed Cabinet Cart CoffeeTable CounterTop Desk DiningTable Drawer Dresser GarbageCan
Ottoman Safe Shelf SideTable Sofa Toilet""".split()
ALLOWED_PARENTS = {
    "pick_and_place_simple": frozenset(_PLACE_PARENTS + ["Microwave", "ToiletPaperHanger"]),
    "pick_two_obj_and_place": frozenset(_PLACE_PARENTS),
    "pick_clean_then_place_in_recep": frozenset("""Cabinet Cart CoffeeMachine CounterTop DiningTable Drawer
        Fridge GarbageCan Microwave Shelf SideTable StoveBurner Toilet""".split()),
    "pick_heat_then_place_in_recep": frozenset("""Cabinet CoffeeMachine CounterTop DiningTable Fridge
        GarbageCan Shelf SideTable""".split()),
    "pick_cool_then_place_in_recep": frozenset("""Cabinet CoffeeMachine CounterTop DiningTable GarbageCan
        Microwave Shelf SideTable StoveBurner""".split()),
}
# target objects of the state-change tasks in the released games (whole objects only: no slicing)
STATE_OBJECTS = {
    "pick_clean_then_place_in_recep": ("SinkBasin", frozenset("""Apple Bowl ButterKnife Cloth Cup DishSponge
        Egg Fork Kettle Knife Ladle Lettuce Mug Pan Plate Pot Potato SoapBar Spatula Spoon Tomato""".split())),
    "pick_heat_then_place_in_recep": ("Microwave", frozenset("Apple Cup Egg Mug Plate Potato Tomato".split())),
    "pick_cool_then_place_in_recep": ("Fridge", frozenset("""Apple Bowl Bread Cup Egg Lettuce Mug Pan Plate
        Pot Potato Tomato WineBottle""".split())),
}
# types that the released games mark `pickupable` (AI2-THOR metadata), collected from json_2.1.1
PICKUPABLE = frozenset("""
AlarmClock Apple BaseballBat BasketBall Book Boots Bowl Box Bread ButterKnife CD Candle CellPhone
Cloth CreditCard Cup DishSponge Egg Footstool Fork Glassbottle HandTowel Kettle KeyChain Knife Ladle
Laptop Lettuce Mug Newspaper Pan PaperTowelRoll Pen Pencil PepperShaker Pillow Plate Plunger Pot
Potato RemoteControl SaltShaker ScrubBrush SoapBar SoapBottle Spatula Spoon SprayBottle Statue
TeddyBear TennisRacket TissueBox ToiletPaper Tomato Towel Vase Watch WateringCan WineBottle
""".split())
# non-pickupable scenery; some of it sits in a receptacle in the released games
FIXED = frozenset("""
Blinds Chair Curtains DeskLamp FloorLamp HousePlant LaundryHamperLid LightSwitch Mirror Painting
Poster ShowerDoor ShowerGlass StoveKnob Television Window
""".split())
FIXED_HOLDERS = {  # receptacle types a fixed object is put on (released games' statistics)
    "DeskLamp": ("Desk", "SideTable", "Dresser", "Shelf"),
    "HousePlant": ("CounterTop", "SideTable", "DiningTable", "CoffeeTable", "Shelf", "Desk"),
    "Television": ("TVStand", "Dresser", "CoffeeTable"),
}
LAMP_HOLDERS = FIXED_HOLDERS["DeskLamp"]
# typical heights (m) of receptacles the layout files give no pose for
SYNTH_HEIGHT = {"GarbageCan": 0.0, "Toilet": 0.0, "LaundryHamper": 0.0, "Ottoman": 0.0, "Safe": 0.0,
                "StoveBurner": 0.92, "Toaster": 0.90, "CoffeeMachine": 0.90, "HandTowelHolder": 1.60,
                "TowelHolder": 1.10, "ToiletPaperHanger": 0.70, "Cabinet": 0.40, "Drawer": 0.50,
                "Shelf": 0.60, "SinkBasin": 0.90}
ON_COUNTER = {"StoveBurner", "Toaster", "CoffeeMachine"}
IN_PREP = {"Drawer", "Cabinet", "Fridge", "Microwave", "Safe", "GarbageCan", "SinkBasin",
           "BathtubBasin", "LaundryHamper", "Box"}


def _constants():
    from act_pipeline.envs.alfworld import import_alfworld

    import_alfworld()  # $ALFWORLD_DATA as it was (alfworld's import sets it)
    import alfworld.gen.constants as C

    return C
