"""The recall channels, by name. A new channel is one module here and one line below."""

from movierec.registry import Registry

CHANNELS = Registry("recall channel", {
    "sasrec": "movierec.recall.channels.sasrec:SASRecChannel",
    "sasrec2": "movierec.recall.channels.sasrec:SecondSASRecChannel",
    "sasrec3": "movierec.recall.channels.sasrec:ThirdSASRecChannel",
    "ncf": "movierec.recall.channels.ncf:NCFChannel",
    "poster": "movierec.recall.channels.poster:PosterChannel",
    "item2item": "movierec.recall.channels.item2item:Item2ItemChannel",
    "content": "movierec.recall.channels.content:ContentChannel",
    "two_tower": "movierec.recall.channels.two_tower:TwoTowerChannel",
})
