@problemName MissingValue
@missing true
@dimensions 2
@equalLength false
@classLabel true x y
@data
1,2:3,4:x
1,2:3,4:y
1,?,3:4,5,6:y
