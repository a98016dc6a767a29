import BuddyPools
