//! Orders: a buyer's purchase of a listing with its terms frozen.
