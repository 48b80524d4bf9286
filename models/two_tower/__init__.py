"""The two-tower recall model: a user tower over side features (and, when known, the user id
and the recent items), a movie tower over id, genres, year and content vector; trained in
Paddle (`training`), served in numpy (`scorer`)."""
