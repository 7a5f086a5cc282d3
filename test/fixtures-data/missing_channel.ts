@problemName MissingChannel
@timeStamps false
@univariate false
@dimensions 3
@equalLength true
@seriesLength 2
@classLabel true x y
@data
1,2:3,4:5,6:x
1,2:3,4:y
