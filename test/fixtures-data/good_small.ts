# A tiny valid file: 2 channels, variable length, 3 classes.
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data
1,2,3:4,5,6:a
# a comment inside the data
7,8:9,10:c

-1.5e1,2.5:0,.5:b
