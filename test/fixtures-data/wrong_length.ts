@problemName WrongLength
@dimensions 1
@equalLength true
@seriesLength 3
@classLabel true x y
@data
1,2,3:x
1,2,3,4:y
